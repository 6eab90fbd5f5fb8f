"""The inference path as a graph: a module that takes an image tensor and returns plain tensors, for ONNX and
``torch.export`` (``tools/export_model.py``; README, "Export").

The wrappers call the model's own pieces (normalisation, padding, backbone, heads, RankSeg's ranking, semantic
inference), so their outputs equal the model's. The graph is traced for one input size: every shape, and the
deformable attention's level sizes, are constants of it. Multi-scale deformable attention is traced on its
pure-PyTorch path (:func:`~mask2former_rankseg.ops.forced_reference`, ``grid_sample``).

Input: ``image`` float [1, 3, H, W] (video: [T, 3, H, W], the T frames of one clip), raw pixel values in
``INPUT.FORMAT`` channel order (what the model's ``image`` holds, as float); the normalisation is inside.

Outputs, by model (:meth:`ExportWrapper.output_names`):

* semantic ``MaskFormer`` (``SEMANTIC_ON`` only) and the per-pixel ``SemanticSegmentor``: ``sem_seg`` [K, H, W],
  the model's ``sem_seg`` for an image of that size;
* panoptic / instance ``MaskFormer``: ``pred_logits`` [Q, K+1] (with RankSeg scattered back to the full class
  space, unselected categories at ``SUPPRESSED_LOGIT``) and ``pred_masks`` [Q, h, w] (mask logits at the pixel
  decoder's resolution, of the padded input); :func:`results_from_raw` turns them into the model's dict;
* ``VideoMaskFormer`` (one clip): ``pred_logits`` [Q, K+1] and ``pred_masks`` [Q, T, h, w];
* with RankSeg also ``multilabel_scores`` [K] (image-level logits) and ``multilabel_topk`` [k] (the selected
  categories, best first).
"""

from __future__ import annotations

import contextlib
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch._subclasses import fake_tensor
from torch.fx.experimental import proxy_tensor
from torch.nn import functional as F

from ..constants import SUPPRESSED_LOGIT
from ..modeling.meta_arch import MaskFormer, SemanticSegmentor, VideoMaskFormer
from ..modeling.meta_arch.postprocess import semantic_inference
from ..modeling.rankseg import multilabel_result, scatter_back
from ..ops import forced_reference
from ..structures import ImageList, sem_seg_postprocess

__all__ = ["EXPORT_FORMATS", "ExportWrapper", "ONNX_OPSET", "export_onnx", "export_program", "export_wrapper",
           "results_from_raw"]

EXPORT_FORMATS = ("onnx", "exported-program")
ONNX_OPSET = 18
"""ONNX opset of the exported graphs (``GridSample`` needs >= 16; 18 is the lowest the dynamo exporter writes
without converting)."""
CONSTANT_SHAPE_ELEMENTS = 64
"""Tensors of up to this many elements keep their values during ``torch.export`` (:func:`_constant_level_shapes`)."""


def _padded(image: torch.Tensor, size_divisibility: int) -> torch.Tensor:
    """[N, C, H, W] padded bottom/right with zeros to a multiple of ``size_divisibility`` (ImageList's padding;
    the sizes are constants of the traced graph)."""
    height, width = image.shape[-2:]
    if size_divisibility <= 1:
        return image
    pad_h = -height % size_divisibility
    pad_w = -width % size_divisibility
    if pad_h == 0 and pad_w == 0:
        return image
    return F.pad(image, (0, pad_w, 0, pad_h))


class ExportWrapper(nn.Module):
    """Base: holds the model (eval mode) and names its outputs."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.eval()

    @property
    def rankseg(self) -> bool:
        return self.model.ml_head is not None or bool(getattr(self.model, "head_ranks", False))

    def output_names(self) -> List[str]:
        raise NotImplementedError

    def _normalized(self, image: torch.Tensor) -> torch.Tensor:
        return (image - self.model.pixel_mean) / self.model.pixel_std


class MaskFormerExport(ExportWrapper):
    """``MaskFormer`` on one image [1, 3, H, W]: ``sem_seg`` [K, H, W] (semantic configs) or the raw
    ``pred_logits`` [Q, K+1] and ``pred_masks`` [Q, h, w] (panoptic / instance configs), plus RankSeg's
    ``multilabel_scores`` [K] and ``multilabel_topk`` [k]."""

    def __init__(self, model: MaskFormer):
        super().__init__(model)
        self.semantic = model.semantic_on and not (model.panoptic_on or model.instance_on)

    def output_names(self) -> List[str]:
        names = ["sem_seg"] if self.semantic else ["pred_logits", "pred_masks"]
        return names + (["multilabel_scores", "multilabel_topk"] if self.rankseg else [])

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        model = self.model
        height, width = image.shape[-2:]
        padded = _padded(self._normalized(image), model.size_divisibility)
        outputs = model.sem_seg_head(model.backbone(padded))
        image_logits, topk_index = model.classify(outputs, None)
        mask_cls = outputs["pred_logits"]
        if topk_index is not None:
            mask_cls = scatter_back(mask_cls, topk_index, model.num_classes, SUPPRESSED_LOGIT)
        mask_pred = outputs["pred_masks"]
        if self.semantic:
            mask_pred = F.interpolate(mask_pred, size=padded.shape[-2:], mode="bilinear", align_corners=False)
            mask_pred = sem_seg_postprocess(mask_pred[0], (height, width), height, width)
            result: Tuple[torch.Tensor, ...] = (semantic_inference(mask_cls[0].to(mask_pred), mask_pred),)
        else:
            result = (mask_cls[0], mask_pred[0])
        if topk_index is not None:
            ranking = multilabel_result(image_logits[0], topk_index[0])
            result = (*result, ranking["scores"], ranking["topk"])
        return result


class VideoMaskFormerExport(ExportWrapper):
    """``VideoMaskFormer`` on one clip [T, 3, H, W] (all frames in one backbone pass): ``pred_logits`` [Q, K+1],
    ``pred_masks`` [Q, T, h, w], plus RankSeg's ``multilabel_scores`` [K] and ``multilabel_topk`` [k]."""

    def output_names(self) -> List[str]:
        return ["pred_logits", "pred_masks"] + (["multilabel_scores", "multilabel_topk"] if self.rankseg else [])

    def forward(self, frames: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        model = self.model
        padded = _padded(self._normalized(frames), model.size_divisibility)
        x, mask_features = model.sem_seg_head.pixel_features(model.backbone(padded))
        outputs = model.sem_seg_head.predictor(x, mask_features, None, num_frames=frames.shape[0])
        image_logits, topk_index = model.classify(outputs, None)
        mask_cls = outputs["pred_logits"]
        if topk_index is not None:
            mask_cls = scatter_back(mask_cls, topk_index, model.num_classes, SUPPRESSED_LOGIT)
        result: Tuple[torch.Tensor, ...] = (mask_cls[0], outputs["pred_masks"][0])
        if topk_index is not None:
            ranking = multilabel_result(image_logits[0], topk_index[0])
            result = (*result, ranking["scores"], ranking["topk"])
        return result


class SemanticSegmentorExport(ExportWrapper):
    """The per-pixel ``SemanticSegmentor`` on one image [1, 3, H, W] (whole or sliding-window test mode):
    ``sem_seg`` [K, H, W] (softmax scores), plus RankSeg's ``multilabel_scores`` [K] and ``multilabel_topk``
    [k]."""

    def output_names(self) -> List[str]:
        return ["sem_seg"] + (["multilabel_scores", "multilabel_topk"] if self.rankseg else [])

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        model = self.model
        x = self._normalized(image)
        if model.test_mode == "whole":
            logits, image_logits, topk_index = model._full_logits(x, None)
        else:
            logits, image_logits, topk_index = model._slide_logits(x, None)
        result: Tuple[torch.Tensor, ...] = (logits[0].softmax(0),)
        if image_logits is not None:
            ranking = multilabel_result(image_logits[0], topk_index[0], no_object=False)
            result = (*result, ranking["scores"], ranking["topk"])
        return result


def export_wrapper(model: nn.Module) -> ExportWrapper:
    """The export module of a built model (``MaskFormer``, ``VideoMaskFormer`` or ``SemanticSegmentor``).

    Raises:
        ValueError: for another model, or one with the ground-truth oracle (``ml_use_gt``: needs annotations).
    """
    if getattr(model, "ml_use_gt", False):
        raise ValueError("MODEL.RANKSEG.USE_GT (the ground-truth oracle) needs annotations; an exported graph runs "
                         "on plain images. Set MODEL.RANKSEG.USE_GT False.")
    if isinstance(model, VideoMaskFormer):
        return VideoMaskFormerExport(model)
    if isinstance(model, MaskFormer):
        return MaskFormerExport(model)
    if isinstance(model, SemanticSegmentor):
        return SemanticSegmentorExport(model)
    raise ValueError(f"No export path for {type(model).__name__}; MaskFormer, VideoMaskFormer and "
                     "SemanticSegmentor export.")


def export_onnx(wrapper: ExportWrapper, example: torch.Tensor, path: str, opset: int = ONNX_OPSET) -> None:
    """Write ``wrapper`` traced on ``example`` as an ONNX file (TorchScript-based exporter, fixed input size,
    deformable attention on the reference path). Needs ``onnx`` (``pip install onnx onnxruntime onnxscript``)."""
    with torch.no_grad(), forced_reference(), _constant_level_shapes():
        torch.onnx.export(
            wrapper, (example,), path, input_names=["image"], output_names=wrapper.output_names(),
            opset_version=opset, dynamo=True, external_data=False, verbose=False,
            custom_translation_table={torch.ops.aten.sort.stable: _onnx_stable_sort},
        )


def export_program(wrapper: ExportWrapper, example: torch.Tensor, path: str) -> torch.export.ExportedProgram:
    """``torch.export.export`` of ``wrapper`` on ``example`` (fixed input size, deformable attention on the
    reference path), saved with ``torch.export.save`` to ``path`` (``.pt2``). Returns the program."""
    with torch.no_grad(), forced_reference(), _constant_level_shapes():
        program = torch.export.export(wrapper, (example,))
    torch.export.save(program, path)
    return program


def results_from_raw(model: MaskFormer, raw: Sequence[torch.Tensor], image_size: Tuple[int, int],
                     height: Optional[int] = None, width: Optional[int] = None) -> Dict:
    """The model's output dict (``sem_seg``, ``panoptic_seg``, ``instances``, ``multilabel`` as its config enables)
    from the raw outputs of an exported panoptic / instance ``MaskFormer`` (the post-processing that stays in
    Python: mask resizing, panoptic merging, instance top-k).

    Args:
        raw: ``(pred_logits [Q, K+1], pred_masks [Q, h, w])``, then ``(multilabel_scores, multilabel_topk)`` with
            RankSeg (tensors; numpy arrays from onnxruntime go through ``torch.as_tensor``).
        image_size: (H, W) of the exported input. height, width: the output size (default: the input's).
    """
    raw = [torch.as_tensor(r) for r in raw]
    h, w = image_size
    padded = _padded(torch.empty((1, 1, h, w), device="meta"), model.size_divisibility)
    images = ImageList(padded, [(h, w)])
    outputs = {"pred_logits": raw[0][None], "pred_masks": raw[1][None]}
    inputs = [{"height": h if height is None else height, "width": w if width is None else width}]
    result = model._inference(outputs, inputs, images, None, None)[0]
    if len(raw) == 4:
        result["multilabel"] = {"scores": raw[2], "topk": raw[3]}
    return result


def _onnx_stable_sort(self, stable=None, dim: int = -1, descending: bool = False):
    """ONNX translation of ``aten.sort.stable`` (RankSeg's top-k selection): ``TopK`` over the whole axis, sorted.
    ONNX's TopK puts the lower index first among equal values, which is the stable sort's order."""
    from onnxscript import opset18 as op  # the exporter's own dependency (pip install onnxscript)

    size = op.Gather(op.Shape(self), op.Constant(value_ints=[dim]), axis=0)
    values, indices = op.TopK(self, size, axis=dim, largest=1 if descending else 0, sorted=1)
    return values, indices


@contextlib.contextmanager
def _constant_level_shapes() -> Iterator[None]:
    """Let ``torch.export`` see the level sizes of the deformable attention as constants.

    The pixel decoder keeps the level sizes in a small tensor ([L, 2] and [L]) and reads them back with
    ``.tolist()``. Under ``torch.export`` such reads of a traced tensor become data-dependent symbols and fail;
    fake tensors carry the values of constants only up to ``CONSTANT_NUMEL_LIMIT`` elements (1 by default). The
    limit is raised for the export so that these few-element tensors stay constants of the (fixed-size) graph.
    """
    modules = [fake_tensor, proxy_tensor]
    previous = [m.CONSTANT_NUMEL_LIMIT for m in modules]
    try:
        for m in modules:
            m.CONSTANT_NUMEL_LIMIT = max(m.CONSTANT_NUMEL_LIMIT, CONSTANT_SHAPE_ELEMENTS)
        yield
    finally:
        for m, value in zip(modules, previous):
            m.CONSTANT_NUMEL_LIMIT = value

"""``SemanticSegmentor``: the per-pixel family's meta-architecture (detectron2's name; mmseg's ``EncoderDecoder``
behaviour): backbone -> per-pixel head (+ an auxiliary head in training) -> ``sem_seg`` [K, H, W], with RankSeg's
image-level ranking and selected-label pixel classifier when ``MODEL.RANKSEG.FLAG`` is on.

The output contract is :class:`MaskFormer`'s, so the semantic and ranking evaluators, test-time augmentation,
``Predictor``, the demo and ``train_net.py`` serve both families.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from ...config import ConfigError
from ...structures import ImageList
from ...utils.precision import float32_region
from ..build import build_backbone, build_sem_seg_head
from ..heads import build_aux_head
from ..rankseg import (
    check_topk,
    multilabel_loss,
    multilabel_result,
    pixel_rankseg_kwargs_from_config,
    present_classes,
    present_in_label_maps,
    rank_categories,
    rankseg_settings_from_config,
    remap_pixel_labels,
    scatter_back_maps,
    select_topk,
    suppress_absent_maps,
)
from ..registry import META_ARCH_REGISTRY
from .grouped_scores import GroupedScores

__all__ = ["SemanticSegmentor", "TEST_MODES", "LOSS_TYPES", "pixel_cross_entropy", "slide_windows"]

logger = logging.getLogger(__name__)

TEST_MODES = ("whole", "slide")
LOSS_TYPES = ("cross_entropy", "hard_pixel_mining")
HARD_PIXEL_FRACTION = 0.2
"""detectron2's DeepLab ``hard_pixel_mining``: the loss averages the 20 % largest pixel losses."""


def pixel_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, ignore_label: int,
                        loss_type: str = "cross_entropy") -> torch.Tensor:
    """Cross-entropy of ``logits`` [B, C, h, w], bilinearly resized to the labels' size (``align_corners`` False,
    as mmseg), against ``labels`` [B, H, W].

    ``"cross_entropy"`` is mmseg's: the sum over labelled pixels divided by the number of *all* pixels (ignored
    ones count as 0, as mmseg's ``CrossEntropyLoss`` with its default reduction). ``"hard_pixel_mining"`` is
    detectron2 DeepLab's: the mean of the largest :data:`HARD_PIXEL_FRACTION` of the pixel losses.

    The logits are resized channels-last and only the labelled pixels go through the softmax: the value and
    gradient of ``F.interpolate`` + ``F.cross_entropy``, about twice as fast on the CPU with many classes.
    """
    num_classes = logits.shape[1]
    logits = F.interpolate(logits.contiguous(memory_format=torch.channels_last), size=labels.shape[-2:],
                           mode="bilinear", align_corners=False)
    targets = labels.reshape(-1)
    valid = targets != ignore_label
    losses = F.cross_entropy(logits.permute(0, 2, 3, 1).reshape(-1, num_classes)[valid], targets[valid],
                             reduction="none")
    if loss_type == "hard_pixel_mining":
        every = losses.new_zeros(targets.numel())
        every[valid] = losses
        return torch.topk(every, max(1, int(HARD_PIXEL_FRACTION * every.numel()))).values.mean()
    return losses.sum() / targets.numel()


Window = Tuple[int, int, int, int]
"""(y1, y2, x1, x2) of a sliding window."""


def slide_windows(height: int, width: int, crop: Sequence[int], stride: Sequence[int]) -> List[Window]:
    """mmseg's sliding windows ``(y1, y2, x1, x2)`` over an image: a grid every ``stride`` (h, w) pixels, the last
    row and column shifted back to end at the border, windows clipped to the image where it is smaller than
    ``crop`` (h, w)."""
    (h_crop, w_crop), (h_stride, w_stride) = crop, stride
    rows = max(height - h_crop + h_stride - 1, 0) // h_stride + 1
    cols = max(width - w_crop + w_stride - 1, 0) // w_stride + 1
    windows = []
    for r in range(rows):
        for c in range(cols):
            y2, x2 = min(r * h_stride + h_crop, height), min(c * w_stride + w_crop, width)
            windows.append((max(y2 - h_crop, 0), y2, max(x2 - w_crop, 0), x2))
    return windows


@META_ARCH_REGISTRY.register()
class SemanticSegmentor(nn.Module):
    """Per-pixel semantic segmentation, with RankSeg when ``ml_head`` is given.

    Submodules: ``backbone``, ``sem_seg_head`` (its ``predictor`` is the pixel classifier: a 1x1 convolution, or
    RankSeg's selected-label classifier with the rank-adaptive ``LayerNorm(TOPK)``), ``aux_head`` (training only)
    and ``ml_head`` (RankSeg's multi-label head on the backbone map ``ml_in_feature``).

    Training (inputs with ``sem_seg`` [H, W]): ``loss_sem_seg`` (cross-entropy at the label's resolution; with
    RankSeg over the image's top-k categories, labels as rank positions and pixels of unselected categories
    ignored), ``loss_aux`` (the auxiliary head's, over all categories) and ``loss_ml`` (asymmetric loss of the
    image-level logits against the categories present). Inference: ``sem_seg`` [K, H, W] softmax probabilities at
    (``height``, ``width``) (unselected categories: logit ``SUPPRESSED_LOGIT`` before the softmax), and with
    RankSeg ``multilabel``.

    Args:
        backbone: returns a dict of maps. sem_seg_head: ``(features, topk_index or None) -> logits`` at its stride.
        aux_head: ``features -> logits [B, K, h, w]`` or None.
        num_classes: K. ignore_label: label value without supervision.
        pixel_mean, pixel_std: normalisation in the input's pixel units.
        loss_weight, aux_loss_weight: weights of the head's and the auxiliary head's losses.
        loss_type: one of :data:`LOSS_TYPES`.
        test_mode: "whole" or "slide"; test_crop_size, test_stride: (h, w) of the sliding windows.
        ml_head, ml_loss, ml_loss_weight, ml_topk, ml_share_embedding: RankSeg (see
            :func:`~..rankseg.pixel_rankseg_kwargs_from_config`). ml_in_feature: the map ``ml_head`` reads.
        ml_use_gt: the ground-truth oracle: categories absent from the image are suppressed and, with RankSeg, the
            present ones are ranked first (needs ``sem_seg`` or ``instances`` in the inputs at inference too).
        semantic_output: "scores" (``sem_seg``), "labels" (``sem_seg_labels`` [H, W], the argmax, without the
            [K, H, W] output) or "grouped" (``sem_seg_grouped``, for test-time augmentation).
    """

    def __init__(
        self,
        *,
        backbone: nn.Module,
        sem_seg_head: nn.Module,
        num_classes: int,
        ignore_label: int,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        aux_head: Optional[nn.Module] = None,
        loss_weight: float = 1.0,
        aux_loss_weight: float = 0.4,
        loss_type: str = "cross_entropy",
        test_mode: str = "whole",
        test_crop_size: Sequence[int] = (512, 512),
        test_stride: Sequence[int] = (341, 341),
        ml_head: Optional[nn.Module] = None,
        ml_loss: Optional[nn.Module] = None,
        ml_loss_weight: float = 0.0,
        ml_topk: int = 0,
        ml_in_feature: str = "res5",
        ml_share_embedding: bool = False,
        ml_use_gt: bool = False,
        semantic_output: str = "scores",
    ):
        super().__init__()
        if loss_type not in LOSS_TYPES:
            raise ConfigError(f"MODEL.SEM_SEG_HEAD.LOSS_TYPE={loss_type!r}; choose one of {LOSS_TYPES}.")
        if test_mode not in TEST_MODES:
            raise ConfigError(f"MODEL.SEM_SEG_HEAD.TEST_MODE={test_mode!r}; choose one of {TEST_MODES}.")
        if len(test_crop_size) != 2 or len(test_stride) != 2 or min(*test_crop_size, *test_stride) <= 0:
            raise ConfigError(f"MODEL.SEM_SEG_HEAD.TEST_CROP_SIZE={tuple(test_crop_size)} and TEST_STRIDE="
                              f"{tuple(test_stride)} must be two positive (h, w) sizes.")
        self.backbone = backbone
        self.sem_seg_head = sem_seg_head
        self.aux_head = aux_head
        self.ml_head = ml_head
        self.ml_loss = ml_loss
        self.num_classes = num_classes
        self.ignore_label = int(ignore_label)
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), False)
        self.loss_weight = loss_weight
        self.aux_loss_weight = aux_loss_weight
        self.loss_type = loss_type
        self.test_mode = test_mode
        self.test_crop_size = tuple(int(v) for v in test_crop_size)
        self.test_stride = tuple(int(v) for v in test_stride)
        self.ml_loss_weight = ml_loss_weight
        self.ml_topk = ml_topk
        self.ml_in_feature = ml_in_feature
        self.ml_share_embedding = ml_share_embedding
        self.ml_use_gt = ml_use_gt
        self.semantic_output = semantic_output
        if ml_head is not None:
            self._check_rankseg()
        elif self.head_ranks:
            check_topk(self.ml_topk, self.num_classes)
            if ml_loss is None or sem_seg_head.topk != ml_topk:
                raise ConfigError(f"The head ranks {sem_seg_head.topk} categories; it needs RankSeg's loss and "
                                  f"MODEL.RANKSEG.TOPK={ml_topk} to agree (build both from one config).")

    @property
    def head_ranks(self) -> bool:
        """Whether the head computes RankSeg's image-level logits itself (Segmenter's), instead of ``ml_head``."""
        return bool(getattr(self.sem_seg_head, "ranks_categories", False))

    def _check_rankseg(self) -> None:
        check_topk(self.ml_topk, self.num_classes)
        predictor = self.sem_seg_head.predictor
        if not hasattr(predictor, "class_embedding"):
            raise ConfigError("RankSeg's multi-label head needs the selected-label pixel classifier: build the head "
                              "with MODEL.RANKSEG.FLAG True.")
        if predictor.topk != self.ml_topk:
            raise ConfigError(f"The pixel classifier keeps {predictor.topk} categories but MODEL.RANKSEG.TOPK is "
                              f"{self.ml_topk}.")
        if self.ml_share_embedding and predictor.class_embedding.shape[1] != self.ml_head.hidden_dim:
            raise ConfigError(
                f"MODEL.RANKSEG.SHARE_EMBEDDING needs MODEL.RANKSEG.HIDDEN_DIM ({self.ml_head.hidden_dim}) equal to "
                f"the head's width ({predictor.class_embedding.shape[1]}: MODEL.SEM_SEG_HEAD.ASPP_CHANNELS for "
                "DeepLabV3Head, CONVS_DIM for UPerHead): "
                "the multi-label head reads the pixel classifier's class embeddings."
            )

    @classmethod
    def from_config(cls, cfg) -> SemanticSegmentor:
        """Backbone, MODEL.SEM_SEG_HEAD's head, MODEL.AUX_HEAD, MODEL.RANKSEG (per-pixel) and the test mode."""
        backbone = build_backbone(cfg)
        shapes = backbone.output_shape()
        head = cfg.MODEL.SEM_SEG_HEAD
        sem_seg_head = build_sem_seg_head(cfg, shapes)
        rankseg = {}
        if getattr(sem_seg_head, "ranks_categories", False):
            rankseg = rankseg_settings_from_config(cfg)
        elif cfg.MODEL.RANKSEG.FLAG:
            feature = cfg.MODEL.RANKSEG.IN_FEATURE
            if feature not in shapes:
                raise ConfigError(f"MODEL.RANKSEG.IN_FEATURE={feature!r}: the backbone gives {sorted(shapes)} (the "
                                  "per-pixel multi-label head reads one backbone map, e.g. its last one).")
            rankseg = pixel_rankseg_kwargs_from_config(cfg, shapes[feature].channels)
        return cls(
            backbone=backbone,
            sem_seg_head=sem_seg_head,
            aux_head=build_aux_head(cfg, shapes),
            num_classes=head.NUM_CLASSES,
            ignore_label=head.IGNORE_VALUE,
            pixel_mean=cfg.MODEL.PIXEL_MEAN,
            pixel_std=cfg.MODEL.PIXEL_STD,
            loss_weight=head.LOSS_WEIGHT,
            aux_loss_weight=cfg.MODEL.AUX_HEAD.LOSS_WEIGHT,
            loss_type=head.LOSS_TYPE,
            test_mode=head.TEST_MODE,
            test_crop_size=head.TEST_CROP_SIZE,
            test_stride=head.TEST_STRIDE,
            ml_use_gt=cfg.MODEL.RANKSEG.USE_GT,
            **rankseg,
        )

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def forward(self, batched_inputs: List[Dict]) -> List[Dict] | Dict[str, torch.Tensor]:
        """Train: dict of weighted losses. Eval: one dict per image (ARCHITECTURE.md, "Model input and output").

        Args:
            batched_inputs: dicts with ``image`` (uint8 [3, H, W]), optional ``height``/``width`` (output size),
                and for training ``sem_seg`` (int64 [H, W]); the oracle also reads ``sem_seg`` or ``instances``.
        """
        images = [(x["image"].to(self.device) - self.pixel_mean) / self.pixel_std for x in batched_inputs]
        images = ImageList.from_tensors(images, self.backbone.size_divisibility)
        if self.training:
            if any("sem_seg" not in x for x in batched_inputs):
                raise ValueError("SemanticSegmentor training needs 'sem_seg' in every input dict (use the "
                                 "mask_former_semantic dataset mapper).")
            labels = ImageList.from_tensors([x["sem_seg"].to(self.device) for x in batched_inputs],
                                            self.backbone.size_divisibility, pad_value=self.ignore_label).tensor
            return self._losses(images.tensor, labels.long())
        present = self._present(batched_inputs, images) if self.ml_use_gt else None
        return self._inference(batched_inputs, images, present)

    # shared ------------------------------------------------------------------------------------
    def _ranked_logits(self, x: torch.Tensor, present: Optional[torch.Tensor]) -> Tuple[Dict, torch.Tensor, Any, Any]:
        """(backbone features, head logits [B, K or k, h, w], image logits [B, K], selection [B, k]) of a
        normalised batch; the oracle (``present``) suppresses absent categories (in rank space with RankSeg)."""
        features = self.backbone(x)
        image_logits = topk_index = None
        if self.head_ranks:
            def select(scores: torch.Tensor) -> torch.Tensor:
                return select_topk(scores, self.ml_topk, no_object=False, present=present)

            logits, image_logits, topk_index = self.sem_seg_head.forward_ranked(features, select)
            if present is not None:
                logits = suppress_absent_maps(logits, torch.gather(present, 1, topk_index))
            return features, logits, image_logits, topk_index
        if self.ml_head is not None:
            class_embedding = self.sem_seg_head.predictor.class_embedding if self.ml_share_embedding else None
            image_logits, topk_index = rank_categories(self.ml_head, features[self.ml_in_feature], self.ml_topk,
                                                       class_embedding, no_object=False, present=present)
        logits = self.sem_seg_head(features, topk_index)
        if present is not None:
            kept = present if topk_index is None else torch.gather(present, 1, topk_index)
            logits = suppress_absent_maps(logits, kept)
        return features, logits, image_logits, topk_index

    # training ----------------------------------------------------------------------------------
    def _losses(self, x: torch.Tensor, labels: torch.Tensor) -> Dict[str, torch.Tensor]:
        present = present_in_label_maps(labels, self.num_classes)
        features, logits, image_logits, topk_index = self._ranked_logits(x, present if self.ml_use_gt else None)
        targets = labels if topk_index is None else remap_pixel_labels(labels, topk_index, self.num_classes,
                                                                       self.ignore_label)
        losses = {"loss_sem_seg": self.loss_weight * self._pixel_loss(logits, targets)}
        if self.aux_head is not None:
            losses["loss_aux"] = self.aux_loss_weight * self._pixel_loss(self.aux_head(features), labels)
        if image_logits is not None:
            losses["loss_ml"] = multilabel_loss(self.ml_loss, image_logits, present, self.ml_loss_weight)
        return losses

    @float32_region
    def _pixel_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return pixel_cross_entropy(logits, labels, self.ignore_label, self.loss_type)

    # inference ---------------------------------------------------------------------------------
    def _present(self, batched_inputs: List[Dict], images: ImageList) -> torch.Tensor:
        """[B, K] categories of each input's ground truth (``sem_seg``, else ``instances``), for the oracle."""
        if all("sem_seg" in x for x in batched_inputs):
            labels = ImageList.from_tensors([x["sem_seg"].to(self.device) for x in batched_inputs], 0,
                                            pad_value=self.ignore_label).tensor
            return present_in_label_maps(labels.long(), self.num_classes)
        if all("instances" in x for x in batched_inputs):
            return present_classes([x["instances"].gt_classes.to(self.device) for x in batched_inputs],
                                   self.num_classes)
        raise ValueError("MODEL.RANKSEG.USE_GT (the ground-truth oracle) needs 'sem_seg' or 'instances' in the "
                         "inputs at inference too; it cannot run on images without annotations.")

    def _full_logits(self, x: torch.Tensor, present: Optional[torch.Tensor]
                     ) -> Tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]:
        """Logits [B, K, H, W] at ``x``'s size (selection scattered back, other categories ``SUPPRESSED_LOGIT``),
        image logits [B, K] and selection [B, k] (None without RankSeg). ``x`` is padded (bottom and right, with the
        normalised mean) to the backbone's size divisibility first (a sliding window may not be)."""
        height, width = x.shape[-2:]
        padded = ImageList.from_tensors(list(x), self.backbone.size_divisibility).tensor
        _, logits, image_logits, topk_index = self._ranked_logits(padded, present)
        if topk_index is not None:
            logits = scatter_back_maps(logits, topk_index, self.num_classes)
        logits = F.interpolate(logits.float(), size=padded.shape[-2:], mode="bilinear", align_corners=False)
        return logits[:, :, :height, :width], image_logits, topk_index

    def _slide_logits(self, x: torch.Tensor, present: Optional[torch.Tensor]
                      ) -> Tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]:
        """Sliding-window logits of one image [1, 3, H, W]: each window ranked on its own (as upstream), the
        overlapping logits averaged; the image-level logits are the windows' mean (``multilabel``)."""
        height, width = x.shape[-2:]
        if self.test_crop_size[0] > height and self.test_crop_size[1] > width:
            raise ConfigError(
                f"MODEL.SEM_SEG_HEAD.TEST_CROP_SIZE={self.test_crop_size} is larger than the image ({height}, "
                f"{width}) in both sides: there is nothing to slide over; use TEST_MODE 'whole' or a smaller crop "
                "(or a larger INPUT.MIN_SIZE_TEST)."
            )
        total = x.new_zeros((1, self.num_classes, height, width))
        count = x.new_zeros((1, 1, height, width))
        window_logits = []
        for y1, y2, x1, x2 in slide_windows(height, width, self.test_crop_size, self.test_stride):
            logits, image_logits, _ = self._full_logits(x[:, :, y1:y2, x1:x2], present)
            total[:, :, y1:y2, x1:x2] += logits
            count[:, :, y1:y2, x1:x2] += 1
            if image_logits is not None:
                window_logits.append(image_logits)
        if not window_logits:
            return total / count, None, None
        image_logits = torch.stack(window_logits).mean(0)
        topk_index = torch.sort(image_logits, dim=1, descending=True, stable=True).indices[:, : self.ml_topk]
        return total / count, image_logits, topk_index

    def _inference(self, batched_inputs: List[Dict], images: ImageList, present: Optional[torch.Tensor]
                   ) -> List[Dict]:
        if self.test_mode == "whole":
            logits, image_logits, topk_index = self._full_logits(images.tensor, present)
            per_image = [(logits[i:i + 1], image_logits, topk_index, i) for i in range(len(batched_inputs))]
        else:
            per_image = []
            for i, (h, w) in enumerate(images.image_sizes):
                logits, image_logits, topk_index = self._slide_logits(
                    images.tensor[i:i + 1, :, :h, :w], None if present is None else present[i:i + 1])
                per_image.append((logits, image_logits, topk_index, 0))
        results = []
        for (logits, image_logits, topk_index, row), input_dict, (h, w) in zip(per_image, batched_inputs,
                                                                                images.image_sizes):
            size = (input_dict.get("height", h), input_dict.get("width", w))
            logits = F.interpolate(logits[:, :, :h, :w], size=size, mode="bilinear", align_corners=False)[0]
            result = self._semantic_result(logits)
            if image_logits is not None:
                result["multilabel"] = multilabel_result(image_logits[row], topk_index[row], no_object=False)
            results.append(result)
        return results

    @float32_region
    def _semantic_result(self, logits: torch.Tensor) -> Dict:
        """logits [K, H, W] -> the output of :attr:`semantic_output`."""
        if self.semantic_output == "labels":
            return {"sem_seg_labels": logits.argmax(0)}
        probs = logits.softmax(0)
        if self.semantic_output == "grouped":
            return {"sem_seg_grouped": GroupedScores.from_dense(probs)}
        return {"sem_seg": probs}

"""``MaskFormer``: the image meta-architecture of Mask2Former / MaskFormer, with RankSeg."""

from __future__ import annotations

import functools
import logging
from typing import Dict, List, Optional, Sequence

import torch

from ...constants import SUPPRESSED_LOGIT
from ...data.catalog import MetadataCatalog
from ...structures import ImageList, sem_seg_postprocess
from ...utils.memory import retry_if_cuda_oom
from ...utils.precision import float32_region
from ..matcher import FULL_MASK_FOCAL
from ..rankseg import multilabel_result, present_classes, scatter_back
from ..registry import META_ARCH_REGISTRY
from .mask_classification import MaskClassificationModel
from .postprocess import (
    instance_inference,
    panoptic_inference,
    semantic_grouped_scores,
    semantic_inference,
    semantic_labels,
    upsample_cropped,
)

logger = logging.getLogger(__name__)

SEMANTIC_OUTPUTS = ("scores", "labels", "grouped")
"""What semantic inference returns: ``sem_seg`` [K, H, W] scores (the detectron2 contract), only
``sem_seg_labels`` [H, W] (their argmax, computed without the [K, H, W] tensor), or ``sem_seg_grouped``
(:class:`GroupedScores`: one map per group of classes with equal scores, for test-time augmentation)."""


@META_ARCH_REGISTRY.register()
class MaskFormer(MaskClassificationModel):
    """Backbone -> pixel decoder -> transformer decoder -> (RankSeg) -> semantic inference.

    Submodules keep upstream's names: ``backbone``, ``sem_seg_head`` (``pixel_decoder``, ``predictor``),
    ``criterion``, and with RankSeg ``ml_head`` (multi-label head) and ``ml_norm`` (rank-adaptive
    ``LayerNorm(topk + 1)`` over the sorted class axis).

    Args:
        sem_seg_head: returns ``pred_logits [B,Q,K+1]``, ``pred_masks [B,Q,h,w]``, ``aux_outputs`` and
            ``query_feature`` (list of [Q,B,C], one per decoder layer).
        semantic_on, panoptic_on, instance_on: which post-processing to run at inference.
        panoptic_within_own_mask: panoptic segments only where the query's own mask is >= 0.5 (Mask2Former), or
            every pixel it wins (MaskFormer); see :func:`panoptic_inference`.
        thing_classes: contiguous ids of the thing classes (panoptic inference).
        semantic_output: "scores" (``sem_seg`` [K, H, W]), "labels" (``sem_seg_labels`` [H, W] int64, the
            argmax of those scores computed chunk-wise over classes; with RankSeg only over the top-k + 1
            distinct score maps) or "grouped" (``sem_seg_grouped``, see :data:`SEMANTIC_OUTPUTS`). Evaluation
            switches it to "labels" when its evaluators need no scores (``evaluation.semantic_output``), TTA to
            "grouped"; it may be changed on a built model.
        common: the keyword arguments of :class:`MaskClassificationModel` (backbone, head, criterion,
            normalisation, RankSeg's ``ml_*``).
    """

    def __init__(
        self,
        *,
        object_mask_threshold: float = 0.8,
        overlap_threshold: float = 0.8,
        sem_seg_postprocess_before_inference: bool = True,
        semantic_on: bool = True,
        panoptic_on: bool = False,
        instance_on: bool = False,
        panoptic_within_own_mask: bool = True,
        test_topk_per_image: int = 100,
        thing_classes: Optional[Sequence[int]] = None,
        semantic_output: str = "scores",
        **common,
    ):
        super().__init__(**common)
        if semantic_output not in SEMANTIC_OUTPUTS:
            raise ValueError(f"semantic_output must be one of {SEMANTIC_OUTPUTS}, got {semantic_output!r}.")
        if not (semantic_on or panoptic_on or instance_on):
            raise ValueError("MODEL.MASK_FORMER.TEST: SEMANTIC_ON, PANOPTIC_ON and INSTANCE_ON are all False; "
                             "turn at least one on.")
        if panoptic_on and thing_classes is None:
            raise ValueError("Panoptic inference needs thing_classes (the contiguous ids of the thing classes, "
                             "from the test dataset's thing_dataset_id_to_contiguous_id).")
        self.object_mask_threshold = object_mask_threshold
        self.overlap_threshold = overlap_threshold
        self.sem_seg_postprocess_before_inference = sem_seg_postprocess_before_inference
        self.semantic_on = semantic_on
        self.panoptic_on = panoptic_on
        self.instance_on = instance_on
        self.panoptic_within_own_mask = panoptic_within_own_mask
        self.semantic_output = semantic_output
        self.test_topk_per_image = test_topk_per_image
        self.thing_classes = None if thing_classes is None else sorted(int(c) for c in thing_classes)

    @classmethod
    def from_config(cls, cfg) -> MaskFormer:
        mf = cfg.MODEL.MASK_FORMER
        return cls(
            **cls.common_kwargs_from_config(cfg),
            object_mask_threshold=mf.TEST.OBJECT_MASK_THRESHOLD,
            overlap_threshold=mf.TEST.OVERLAP_THRESHOLD,
            sem_seg_postprocess_before_inference=sem_seg_postprocess_before_inference(cfg),
            semantic_on=mf.TEST.SEMANTIC_ON,
            panoptic_on=mf.TEST.PANOPTIC_ON,
            instance_on=mf.TEST.INSTANCE_ON,
            # the two upstream codebases: MaskFormer's (full-mask focal loss) keeps every won pixel
            panoptic_within_own_mask=mf.MASK_LOSS != FULL_MASK_FOCAL,
            test_topk_per_image=cfg.TEST.DETECTIONS_PER_IMAGE,
            thing_classes=_thing_classes(cfg) if mf.TEST.PANOPTIC_ON else None,
        )

    def forward(self, batched_inputs: List[Dict]) -> List[Dict] | Dict[str, torch.Tensor]:
        """Train: dict of weighted losses. Eval: one dict per image (ARCHITECTURE.md, "Model input and output").

        Args:
            batched_inputs: dicts with ``image`` (uint8 [3,H,W]), optional ``height``/``width`` (output
                size), and for training or the oracle ``instances`` (``gt_classes`` [N], ``gt_masks``
                [N,H,W]).
        """
        images = self.normalized([x["image"] for x in batched_inputs])
        images = ImageList.from_tensors(images, self.size_divisibility)
        gt_instances = None
        if "instances" in batched_inputs[0]:
            gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
        if self.training and gt_instances is None:
            raise ValueError("Training needs 'instances' in every input dict (use the semantic dataset mapper).")

        features = self.backbone(images.tensor)
        outputs = self.sem_seg_head(features)

        present = None
        if gt_instances is not None:
            present = present_classes([inst.gt_classes for inst in gt_instances], self.num_classes)

        image_logits, topk_index = self.classify(outputs, present)
        if self.training:
            return self._losses(outputs, gt_instances, images, image_logits, topk_index, present)
        return self._inference(outputs, batched_inputs, images, image_logits, topk_index)

    # training ----------------------------------------------------------------------------------
    def _losses(self, outputs, gt_instances, images, image_logits, topk_index, present) -> Dict[str, torch.Tensor]:
        return self.weighted_losses(outputs, self.prepare_targets(gt_instances, images), image_logits, topk_index,
                                    present)

    @staticmethod
    def prepare_targets(gt_instances, images: ImageList) -> List[Dict[str, torch.Tensor]]:
        """Pad each image's gt masks [N, h, w] to the batch's padded size [N, Hpad, Wpad]."""
        h_pad, w_pad = images.tensor.shape[-2:]
        targets = []
        for inst in gt_instances:
            masks = inst.gt_masks
            padded = masks.new_zeros((masks.shape[0], h_pad, w_pad))
            padded[:, : masks.shape[1], : masks.shape[2]] = masks
            targets.append({"labels": inst.gt_classes, "masks": padded})
        return targets

    # inference ---------------------------------------------------------------------------------
    @float32_region  # post-processing (softmax, sigmoid, class x mask product) in float32
    def _inference(self, outputs, batched_inputs, images, image_logits, topk_index) -> List[Dict]:
        mask_cls_results = outputs["pred_logits"]
        if topk_index is not None:
            mask_cls_results = scatter_back(mask_cls_results, topk_index, self.num_classes, SUPPRESSED_LOGIT)
        padded_size = tuple(images.tensor.shape[-2:])
        results = []
        for i, (mask_cls, low_masks, image_size) in enumerate(
            zip(mask_cls_results, outputs["pred_masks"], images.image_sizes)
        ):
            height = int(batched_inputs[i].get("height", image_size[0]))
            width = int(batched_inputs[i].get("width", image_size[1]))
            result = {}
            # the masks upsampled to the padded input and cropped to the image, computing the crop only
            mask_pred = retry_if_cuda_oom(upsample_cropped)(low_masks, padded_size, image_size)
            # resizing to the output size (a no-op when it is the input size, as without test-time resizing);
            # full-resolution post-processing falls back to the CPU on CUDA out-of-memory, as upstream's
            resize = None
            if (height, width) != tuple(mask_pred.shape[-2:]):
                resize = retry_if_cuda_oom(functools.partial(sem_seg_postprocess, img_size=tuple(mask_pred.shape[-2:]),
                                                             output_height=height, output_width=width))
            if self.sem_seg_postprocess_before_inference:
                if resize is not None:
                    mask_pred = resize(mask_pred)
                resize = None
                mask_cls = mask_cls.to(mask_pred)
            if self.semantic_on:
                if self.semantic_output == "labels":
                    result["sem_seg_labels"] = retry_if_cuda_oom(semantic_labels)(mask_cls, mask_pred, resize)
                elif self.semantic_output == "grouped":
                    result["sem_seg_grouped"] = retry_if_cuda_oom(semantic_grouped_scores)(mask_cls, mask_pred, resize)
                elif resize is None:
                    result["sem_seg"] = retry_if_cuda_oom(semantic_inference)(mask_cls, mask_pred)
                else:  # resize the distinct maps only (k + 1 with RankSeg), then copy them to their classes
                    result["sem_seg"] = retry_if_cuda_oom(semantic_grouped_scores)(mask_cls, mask_pred, resize).dense()
            if self.panoptic_on:
                result["panoptic_seg"] = retry_if_cuda_oom(panoptic_inference)(
                    mask_cls, mask_pred, self.thing_classes, self.object_mask_threshold, self.overlap_threshold,
                    within_own_mask=self.panoptic_within_own_mask,
                )
            if self.instance_on:
                result["instances"] = retry_if_cuda_oom(instance_inference)(
                    mask_cls, mask_pred, self.test_topk_per_image,
                    thing_classes=self.thing_classes if self.panoptic_on else None,
                )
            if image_logits is not None:
                result["multilabel"] = multilabel_result(image_logits[i], topk_index[i])
            results.append(result)
        return results


def sem_seg_postprocess_before_inference(cfg) -> bool:
    """Whether the mask logits are resized to the output size before they are combined with the class scores.

    The Mask2Former family follows upstream RankSeg's ``MaskFormer.from_config``, which always does so (its
    released numbers were computed that way; combining at the padded input size first changes scores by up to
    0.06 where the test mapper resized the image). MaskFormer's configs (``MASK_LOSS: full_mask_focal``) follow
    upstream MaskFormer: ``MODEL.MASK_FORMER.TEST.SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE``, or panoptic / instance
    inference on.
    """
    mf = cfg.MODEL.MASK_FORMER
    if mf.MASK_LOSS != FULL_MASK_FOCAL:
        return True
    return bool(mf.TEST.SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE or mf.TEST.PANOPTIC_ON or mf.TEST.INSTANCE_ON)


def _thing_classes(cfg) -> List[int]:
    """Contiguous ids of the thing classes of the first test dataset (what panoptic inference calls things)."""
    if not cfg.DATASETS.TEST:
        raise ValueError("MODEL.MASK_FORMER.TEST.PANOPTIC_ON needs DATASETS.TEST (its metadata names the thing "
                         "classes).")
    mapping = MetadataCatalog.get(cfg.DATASETS.TEST[0]).get("thing_dataset_id_to_contiguous_id")
    if mapping is None:
        raise ValueError(
            f"MODEL.MASK_FORMER.TEST.PANOPTIC_ON needs the thing classes of DATASETS.TEST[0]="
            f"{cfg.DATASETS.TEST[0]!r}, but its metadata has no thing_dataset_id_to_contiguous_id (is the dataset "
            "registered? see datasets/README.md), or turn PANOPTIC_ON off."
        )
    return sorted(int(v) for v in mapping.values())

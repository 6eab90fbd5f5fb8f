"""``MaskFormer``: the image meta-architecture of Mask2Former / MaskFormer, with RankSeg."""

from __future__ import annotations

import functools
import logging
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ...constants import SUPPRESSED_LOGIT
from ...structures import ImageList, sem_seg_postprocess
from ...utils.memory import retry_if_cuda_oom
from ..criterion import SetCriterion
from ..matcher import FULL_MASK_FOCAL, HungarianMatcher
from ..rankseg import (
    AsymmetricLoss,
    MultiLabelHead,
    gather_ranked,
    present_classes,
    remap_targets,
    scatter_back,
    select_topk,
    suppress_absent,
)
from ..registry import META_ARCH_REGISTRY
from .postprocess import (
    instance_inference,
    panoptic_inference,
    semantic_grouped_scores,
    semantic_inference,
    semantic_labels,
)

logger = logging.getLogger(__name__)

RANKSEG_QUERY_LAYER = 2
"""RankSeg's multi-label head reads the queries after this decoder layer (the 3rd)."""

SEMANTIC_OUTPUTS = ("scores", "labels", "grouped")
"""What semantic inference returns: ``sem_seg`` [K, H, W] scores (the detectron2 contract), only
``sem_seg_labels`` [H, W] (their argmax, computed without the [K, H, W] tensor), or ``sem_seg_grouped``
(:class:`GroupedScores`: one map per group of classes with equal scores, for test-time augmentation)."""


@META_ARCH_REGISTRY.register()
class MaskFormer(nn.Module):
    """Backbone -> pixel decoder -> transformer decoder -> (RankSeg) -> semantic inference.

    Submodules keep upstream's names: ``backbone``, ``sem_seg_head`` (``pixel_decoder``, ``predictor``),
    ``criterion``, and with RankSeg ``ml_head`` (multi-label head) and ``ml_norm`` (rank-adaptive
    ``LayerNorm(topk + 1)`` over the sorted class axis).

    Args:
        backbone: returns a dict of feature maps; ``size_divisibility`` used when ``size_divisibility < 0``.
        sem_seg_head: returns ``pred_logits [B,Q,K+1]``, ``pred_masks [B,Q,h,w]``, ``aux_outputs`` and
            ``query_feature`` (list of [Q,B,C], one per decoder layer).
        criterion: :class:`SetCriterion`; its ``weight_dict`` weights and filters the losses.
        num_classes: K, the size of the complete label set.
        size_divisibility: pad images to a multiple of this (-1: the backbone's).
        pixel_mean, pixel_std: per-channel normalisation in the input's pixel units.
        semantic_on, panoptic_on, instance_on: which post-processing to run at inference.
        panoptic_within_own_mask: panoptic segments only where the query's own mask is >= 0.5 (Mask2Former), or
            every pixel it wins (MaskFormer); see :func:`panoptic_inference`.
        ml_head: RankSeg multi-label head, or None for the baseline.
        ml_norm: rank-adaptive LayerNorm(topk + 1); required with ``ml_head``.
        ml_loss, ml_loss_weight: multi-label loss (asymmetric) and its weight.
        ml_topk: number of categories kept per image.
        ml_use_gt: oracle — class logits of categories absent from the ground truth are suppressed.
        ml_share_embedding: feed the query classifier's rows to ``ml_head`` as category embeddings.
        semantic_output: "scores" (``sem_seg`` [K, H, W]), "labels" (``sem_seg_labels`` [H, W] int64, the
            argmax of those scores computed chunk-wise over classes; with RankSeg only over the top-k + 1
            distinct score maps) or "grouped" (``sem_seg_grouped``, see :data:`SEMANTIC_OUTPUTS`). Evaluation
            switches it to "labels" when its evaluators need no scores (``evaluation.semantic_output``), TTA to
            "grouped"; it may be changed on a built model.
    """

    def __init__(
        self,
        *,
        backbone: nn.Module,
        sem_seg_head: nn.Module,
        criterion: nn.Module,
        num_classes: int,
        num_queries: int,
        size_divisibility: int,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        object_mask_threshold: float = 0.8,
        overlap_threshold: float = 0.8,
        panoptic_within_own_mask: bool = True,
        sem_seg_postprocess_before_inference: bool = True,
        semantic_on: bool = True,
        panoptic_on: bool = False,
        instance_on: bool = False,
        test_topk_per_image: int = 100,
        ml_head: Optional[nn.Module] = None,
        ml_norm: Optional[nn.Module] = None,
        ml_loss: Optional[nn.Module] = None,
        ml_loss_weight: float = 0.0,
        ml_topk: int = 0,
        ml_use_gt: bool = False,
        ml_share_embedding: bool = False,
        thing_classes: Optional[Sequence[int]] = None,
        semantic_output: str = "scores",
    ):
        super().__init__()
        if semantic_output not in SEMANTIC_OUTPUTS:
            raise ValueError(f"semantic_output must be one of {SEMANTIC_OUTPUTS}, got {semantic_output!r}.")
        if not (semantic_on or panoptic_on or instance_on):
            raise ValueError("MODEL.MASK_FORMER.TEST: SEMANTIC_ON, PANOPTIC_ON and INSTANCE_ON are all False; "
                             "turn at least one on.")
        if panoptic_on and thing_classes is None:
            raise ValueError("Panoptic inference needs thing_classes (the contiguous ids of the thing classes, "
                             "from the test dataset's thing_dataset_id_to_contiguous_id).")
        if (ml_head is None) != (ml_norm is None):
            raise ValueError("RankSeg needs both ml_head and ml_norm (or neither).")
        if ml_head is not None and not 0 < ml_topk <= num_classes:
            raise ValueError(f"RankSeg TOPK={ml_topk} must lie in [1, NUM_CLASSES={num_classes}].")
        self.backbone = backbone
        self.sem_seg_head = sem_seg_head
        self.criterion = criterion
        self.num_classes = num_classes
        self.num_queries = num_queries
        self.object_mask_threshold = object_mask_threshold
        self.overlap_threshold = overlap_threshold
        self.panoptic_within_own_mask = panoptic_within_own_mask
        if size_divisibility < 0:
            size_divisibility = backbone.size_divisibility
        self.size_divisibility = size_divisibility
        self.sem_seg_postprocess_before_inference = sem_seg_postprocess_before_inference
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), False)
        self.semantic_on = semantic_on
        self.panoptic_on = panoptic_on
        self.instance_on = instance_on
        self.test_topk_per_image = test_topk_per_image
        self.thing_classes = None if thing_classes is None else sorted(int(c) for c in thing_classes)

        self.ml_head = ml_head
        self.ml_norm = ml_norm
        self.ml_loss = ml_loss
        self.ml_loss_weight = ml_loss_weight
        self.ml_topk = ml_topk
        self.ml_use_gt = ml_use_gt
        self.ml_share_embedding = ml_share_embedding
        self.semantic_output = semantic_output

    @classmethod
    def from_config(cls, cfg) -> MaskFormer:
        from ..build import build_backbone, build_sem_seg_head

        backbone = build_backbone(cfg)
        sem_seg_head = build_sem_seg_head(cfg, backbone.output_shape())
        mf = cfg.MODEL.MASK_FORMER
        num_classes = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES

        matcher = HungarianMatcher(
            cost_class=mf.CLASS_WEIGHT, cost_mask=mf.MASK_WEIGHT, cost_dice=mf.DICE_WEIGHT,
            num_points=mf.TRAIN_NUM_POINTS, mask_loss=mf.MASK_LOSS,
        )
        weight_dict = {"loss_ce": mf.CLASS_WEIGHT, "loss_mask": mf.MASK_WEIGHT, "loss_dice": mf.DICE_WEIGHT}
        if mf.DEEP_SUPERVISION:
            weight_dict.update(
                {f"{k}_{i}": v for i in range(mf.DEC_LAYERS - 1) for k, v in list(weight_dict.items())}
            )
        criterion = SetCriterion(
            num_classes, matcher=matcher, weight_dict=weight_dict, eos_coef=mf.NO_OBJECT_WEIGHT,
            losses=["labels", "masks"], num_points=mf.TRAIN_NUM_POINTS,
            oversample_ratio=mf.OVERSAMPLE_RATIO, importance_sample_ratio=mf.IMPORTANCE_SAMPLE_RATIO,
            mask_loss=mf.MASK_LOSS,
        )

        rs = cfg.MODEL.RANKSEG
        ml_kwargs = {}
        if rs.FLAG:
            ml_kwargs = {
                "ml_head": MultiLabelHead.from_config(cfg, num_classes, cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM),
                "ml_norm": nn.LayerNorm(rs.TOPK + 1),
                "ml_loss": AsymmetricLoss(gamma_neg=2, gamma_pos=0, clip=0.05),
                "ml_loss_weight": rs.LOSS_WEIGHT,
                "ml_topk": rs.TOPK,
                "ml_share_embedding": rs.SHARE_EMBEDDING,
            }
        return cls(
            backbone=backbone,
            sem_seg_head=sem_seg_head,
            criterion=criterion,
            num_classes=num_classes,
            num_queries=mf.NUM_OBJECT_QUERIES,
            size_divisibility=mf.SIZE_DIVISIBILITY,
            pixel_mean=cfg.MODEL.PIXEL_MEAN,
            pixel_std=cfg.MODEL.PIXEL_STD,
            object_mask_threshold=mf.TEST.OBJECT_MASK_THRESHOLD,
            overlap_threshold=mf.TEST.OVERLAP_THRESHOLD,
            # the two upstream codebases: MaskFormer's (full-mask focal loss) keeps every won pixel
            panoptic_within_own_mask=mf.MASK_LOSS != FULL_MASK_FOCAL,
            sem_seg_postprocess_before_inference=(
                mf.TEST.SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE or mf.TEST.PANOPTIC_ON or mf.TEST.INSTANCE_ON
            ),
            semantic_on=mf.TEST.SEMANTIC_ON,
            panoptic_on=mf.TEST.PANOPTIC_ON,
            instance_on=mf.TEST.INSTANCE_ON,
            test_topk_per_image=cfg.TEST.DETECTIONS_PER_IMAGE,
            ml_use_gt=rs.USE_GT,
            thing_classes=_thing_classes(cfg) if mf.TEST.PANOPTIC_ON else None,
            **ml_kwargs,
        )

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def forward(self, batched_inputs: List[Dict]) -> List[Dict] | Dict[str, torch.Tensor]:
        """Train: dict of weighted losses. Eval: one dict per image (see DESIGN §2, "model I/O").

        Args:
            batched_inputs: dicts with ``image`` (uint8 [3,H,W]), optional ``height``/``width`` (output
                size), and for training or the oracle ``instances`` (``gt_classes`` [N], ``gt_masks``
                [N,H,W]).
        """
        images = [(x["image"].to(self.device) - self.pixel_mean) / self.pixel_std for x in batched_inputs]
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

        if self.ml_use_gt:
            if present is None:
                raise ValueError(
                    "MODEL.RANKSEG.USE_GT (the ground-truth oracle) needs 'instances' in the inputs at "
                    "inference too; it cannot run on images without annotations."
                )
            outputs["pred_logits"] = suppress_absent(outputs["pred_logits"], present, SUPPRESSED_LOGIT)

        image_logits = topk_index = None
        if self.ml_head is not None:
            image_logits, topk_index = self._rank_categories(outputs)
            self._rescale_ranked_logits(outputs, topk_index)

        if self.training:
            return self._losses(outputs, gt_instances, images, image_logits, topk_index, present)
        return self._inference(outputs, batched_inputs, images, image_logits, topk_index)

    # RankSeg -----------------------------------------------------------------------------------
    def _rank_categories(self, outputs: Dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Image logits [B, K] from the multi-label head and the selected indices [B, topk + 1]."""
        tokens = outputs["query_feature"][RANKSEG_QUERY_LAYER].permute(1, 2, 0)  # [Q,B,C] -> [B,C,Q]
        class_embedding = None
        if self.ml_share_embedding:
            class_embedding = self.sem_seg_head.predictor.class_embed.weight[:-1]
        image_logits = self.ml_head(tokens, class_embedding)
        return image_logits, select_topk(image_logits, self.ml_topk)

    def _rescale_ranked_logits(self, outputs: Dict, topk_index: torch.Tensor) -> None:
        """Gather the k+1 selected columns of every layer's logits and apply the rank-adaptive norm."""
        for out in [outputs, *outputs["aux_outputs"]]:
            out["pred_logits"] = self.ml_norm(gather_ranked(out["pred_logits"], topk_index))

    # training ----------------------------------------------------------------------------------
    def _losses(self, outputs, gt_instances, images, image_logits, topk_index, present) -> Dict[str, torch.Tensor]:
        targets = self.prepare_targets(gt_instances, images)
        if topk_index is not None:
            targets = remap_targets(targets, topk_index, self.num_classes)
        losses = self.criterion(outputs, targets)
        weighted = {k: v * self.criterion.weight_dict[k] for k, v in losses.items() if k in self.criterion.weight_dict}
        if image_logits is not None:
            weighted["loss_ml"] = self.ml_loss(image_logits, present.to(image_logits.dtype)) * self.ml_loss_weight
        return weighted

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
    def _inference(self, outputs, batched_inputs, images, image_logits, topk_index) -> List[Dict]:
        mask_cls_results = outputs["pred_logits"]
        if topk_index is not None:
            mask_cls_results = scatter_back(mask_cls_results, topk_index, self.num_classes, SUPPRESSED_LOGIT)
        mask_pred_results = F.interpolate(
            outputs["pred_masks"], size=images.tensor.shape[-2:], mode="bilinear", align_corners=False
        )
        results = []
        for i, (mask_cls, mask_pred, image_size) in enumerate(
            zip(mask_cls_results, mask_pred_results, images.image_sizes)
        ):
            height = batched_inputs[i].get("height", image_size[0])
            width = batched_inputs[i].get("width", image_size[1])
            result = {}
            # full-resolution post-processing falls back to the CPU on CUDA out-of-memory, as upstream's
            if self.sem_seg_postprocess_before_inference:
                mask_pred = retry_if_cuda_oom(sem_seg_postprocess)(mask_pred, image_size, height, width)
                mask_cls = mask_cls.to(mask_pred)
            if self.semantic_on:
                resize = None
                if not self.sem_seg_postprocess_before_inference:
                    resize = retry_if_cuda_oom(functools.partial(sem_seg_postprocess, img_size=image_size,
                                                                 output_height=height, output_width=width))
                if self.semantic_output == "labels":
                    result["sem_seg_labels"] = retry_if_cuda_oom(semantic_labels)(mask_cls, mask_pred, resize)
                elif self.semantic_output == "grouped":
                    result["sem_seg_grouped"] = retry_if_cuda_oom(semantic_grouped_scores)(mask_cls, mask_pred, resize)
                else:
                    sem_seg = retry_if_cuda_oom(semantic_inference)(mask_cls, mask_pred)
                    result["sem_seg"] = sem_seg if resize is None else resize(sem_seg)
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
                result["multilabel"] = {"scores": image_logits[i], "topk": topk_index[i, :-1]}
            results.append(result)
        return results


def _thing_classes(cfg) -> List[int]:
    """Contiguous ids of the thing classes of the first test dataset (what panoptic inference calls things)."""
    from ...data.catalog import MetadataCatalog

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

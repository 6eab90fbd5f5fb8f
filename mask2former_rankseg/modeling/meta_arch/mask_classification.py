"""What the image (``MaskFormer``) and video (``VideoMaskFormer``) mask-classification models share: their
common state and config (:class:`MaskClassificationModel`), the criterion built from the config, and RankSeg
wired around the transformer decoder's outputs (oracle, ranking, rank-adaptive rescaling, target remapping,
multi-label loss)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ...constants import SUPPRESSED_LOGIT
from ..criterion import SetCriterion
from ..matcher import HungarianMatcher
from ..rankseg import AsymmetricLoss, MultiLabelHead, gather_ranked, remap_targets, select_topk, suppress_absent

RANKSEG_QUERY_LAYER = 2
"""RankSeg's multi-label head reads the queries after this decoder layer (the 3rd)."""


def build_set_criterion(cfg) -> SetCriterion:
    """Hungarian matcher + ``SetCriterion`` with MODEL.MASK_FORMER's weights (auxiliary losses with
    DEEP_SUPERVISION), as upstream's image and video models build them."""
    mf = cfg.MODEL.MASK_FORMER
    matcher = HungarianMatcher(
        cost_class=mf.CLASS_WEIGHT, cost_mask=mf.MASK_WEIGHT, cost_dice=mf.DICE_WEIGHT,
        num_points=mf.TRAIN_NUM_POINTS, mask_loss=mf.MASK_LOSS,
    )
    weight_dict = {"loss_ce": mf.CLASS_WEIGHT, "loss_mask": mf.MASK_WEIGHT, "loss_dice": mf.DICE_WEIGHT}
    if mf.DEEP_SUPERVISION:
        weight_dict.update({f"{k}_{i}": v for i in range(mf.DEC_LAYERS - 1) for k, v in list(weight_dict.items())})
    return SetCriterion(
        cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES, matcher=matcher, weight_dict=weight_dict, eos_coef=mf.NO_OBJECT_WEIGHT,
        losses=["labels", "masks"], num_points=mf.TRAIN_NUM_POINTS, oversample_ratio=mf.OVERSAMPLE_RATIO,
        importance_sample_ratio=mf.IMPORTANCE_SAMPLE_RATIO, mask_loss=mf.MASK_LOSS,
    )


def rankseg_kwargs_from_config(cfg) -> Dict[str, object]:
    """The RankSeg constructor arguments (``ml_head``, ``ml_norm``, ``ml_loss``, ...) from MODEL.RANKSEG; empty
    without ``FLAG``. ``ml_use_gt`` is not included (the oracle also runs without RankSeg)."""
    rs = cfg.MODEL.RANKSEG
    if not rs.FLAG:
        return {}
    num_classes = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
    return {
        "ml_head": MultiLabelHead.from_config(cfg, num_classes, cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM),
        "ml_norm": nn.LayerNorm(rs.TOPK + 1),
        "ml_loss": AsymmetricLoss(gamma_neg=2, gamma_pos=0, clip=0.05),
        "ml_loss_weight": rs.LOSS_WEIGHT,
        "ml_topk": rs.TOPK,
        "ml_share_embedding": rs.SHARE_EMBEDDING,
    }


def check_rankseg_args(ml_head: Optional[nn.Module], ml_norm: Optional[nn.Module], ml_topk: int,
                       num_classes: int) -> None:
    """One clear error for an inconsistent RankSeg configuration of a meta-architecture."""
    if (ml_head is None) != (ml_norm is None):
        raise ValueError("RankSeg needs both ml_head and ml_norm (or neither).")
    if ml_head is not None and not 0 < ml_topk <= num_classes:
        raise ValueError(f"RankSeg TOPK={ml_topk} must lie in [1, NUM_CLASSES={num_classes}].")


def apply_oracle_and_ranking(
    outputs: Dict,
    *,
    present: Optional[torch.Tensor],
    use_gt: bool,
    ml_head: Optional[nn.Module],
    ml_norm: Optional[nn.Module],
    topk: int,
    class_embedding: Optional[torch.Tensor] = None,
) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """The ground-truth oracle and RankSeg on the decoder's outputs, in place.

    With ``use_gt`` the class logits of categories absent from ``present`` are suppressed. With ``ml_head``
    the queries of decoder layer :data:`RANKSEG_QUERY_LAYER` are scored per category, the top-``topk`` are
    selected, and every layer's logits (final and auxiliary) become the rank-ordered k+1 columns through
    ``ml_norm``.

    Args:
        outputs: the decoder's dict: ``pred_logits`` [B, Q, K+1], ``aux_outputs``, ``query_feature`` ([Q, B, C]
            per layer). For clips B counts clips: one ranking per clip from the clip's queries.
        present: [B, K] bool categories in the ground truth, or None without annotations.
        class_embedding: [K, C] the query classifier's rows (with ``SHARE_EMBEDDING``).
    Returns:
        ``(image_logits [B, K], topk_index [B, topk + 1])``, or ``(None, None)`` without ``ml_head``.
    """
    if use_gt:
        if present is None:
            raise ValueError(
                "MODEL.RANKSEG.USE_GT (the ground-truth oracle) needs 'instances' in the inputs at inference "
                "too; it cannot run on images or videos without annotations."
            )
        outputs["pred_logits"] = suppress_absent(outputs["pred_logits"], present, SUPPRESSED_LOGIT)
    if ml_head is None:
        return None, None
    tokens = outputs["query_feature"][RANKSEG_QUERY_LAYER].permute(1, 2, 0)  # [Q, B, C] -> [B, C, Q]
    image_logits = ml_head(tokens, class_embedding)
    topk_index = select_topk(image_logits, topk)
    for out in [outputs, *outputs["aux_outputs"]]:
        out["pred_logits"] = ml_norm(gather_ranked(out["pred_logits"], topk_index))
    return image_logits, topk_index


def mask_classification_losses(
    criterion: SetCriterion,
    outputs: Dict,
    targets: List[Dict[str, torch.Tensor]],
    *,
    num_classes: int,
    image_logits: Optional[torch.Tensor] = None,
    topk_index: Optional[torch.Tensor] = None,
    present: Optional[torch.Tensor] = None,
    ml_loss: Optional[nn.Module] = None,
    ml_loss_weight: float = 0.0,
) -> Dict[str, torch.Tensor]:
    """Weighted set-prediction losses (targets remapped to rank positions with RankSeg; losses not in the
    criterion's ``weight_dict`` are dropped) plus, with RankSeg, ``loss_ml``: the multi-label loss of
    ``image_logits`` against ``present`` times ``ml_loss_weight``."""
    if topk_index is not None:
        targets = remap_targets(targets, topk_index, num_classes)
    losses = criterion(outputs, targets)
    weighted = {k: v * criterion.weight_dict[k] for k, v in losses.items() if k in criterion.weight_dict}
    if image_logits is not None:
        weighted["loss_ml"] = ml_loss(image_logits, present.to(image_logits.dtype)) * ml_loss_weight
    return weighted


def multilabel_result(image_logits: torch.Tensor, topk_index: torch.Tensor) -> Dict[str, torch.Tensor]:
    """The ``multilabel`` output of one image or clip: its logits [K] and the selected categories [k]."""
    return {"scores": image_logits, "topk": topk_index[:-1]}


class MaskClassificationModel(nn.Module):
    """Base of the mask-classification meta-architectures: backbone, head, criterion, pixel normalisation and
    RankSeg's modules under upstream's names (``backbone``, ``sem_seg_head``, ``criterion``, ``ml_head``,
    ``ml_norm``), and the RankSeg steps on their decoder outputs.

    Args:
        backbone: returns a dict of feature maps; ``size_divisibility`` used when ``size_divisibility < 0``.
        sem_seg_head: pixel decoder + transformer decoder (``predictor``).
        criterion: :class:`SetCriterion`; its ``weight_dict`` weights and filters the losses.
        num_classes: K, the size of the complete label set. num_queries: Q.
        size_divisibility: pad inputs to a multiple of this (-1: the backbone's).
        pixel_mean, pixel_std: per-channel normalisation in the input's pixel units.
        ml_head: RankSeg multi-label head, or None for the baseline.
        ml_norm: rank-adaptive LayerNorm(topk + 1); required with ``ml_head``.
        ml_loss, ml_loss_weight: multi-label loss (asymmetric) and its weight.
        ml_topk: number of categories kept per image or clip.
        ml_use_gt: oracle -- class logits of categories absent from the ground truth are suppressed.
        ml_share_embedding: feed the query classifier's rows to ``ml_head`` as category embeddings.
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
        ml_head: Optional[nn.Module] = None,
        ml_norm: Optional[nn.Module] = None,
        ml_loss: Optional[nn.Module] = None,
        ml_loss_weight: float = 0.0,
        ml_topk: int = 0,
        ml_use_gt: bool = False,
        ml_share_embedding: bool = False,
    ):
        super().__init__()
        check_rankseg_args(ml_head, ml_norm, ml_topk, num_classes)
        self.backbone = backbone
        self.sem_seg_head = sem_seg_head
        self.criterion = criterion
        self.num_classes = num_classes
        self.num_queries = num_queries
        if size_divisibility < 0:
            size_divisibility = backbone.size_divisibility
        self.size_divisibility = size_divisibility
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), False)
        self.ml_head = ml_head
        self.ml_norm = ml_norm
        self.ml_loss = ml_loss
        self.ml_loss_weight = ml_loss_weight
        self.ml_topk = ml_topk
        self.ml_use_gt = ml_use_gt
        self.ml_share_embedding = ml_share_embedding

    @staticmethod
    def common_kwargs_from_config(cfg) -> Dict[str, Any]:
        """The constructor arguments above, from the config (backbone, head and criterion built)."""
        from ..build import build_backbone, build_sem_seg_head

        backbone = build_backbone(cfg)
        return {
            "backbone": backbone,
            "sem_seg_head": build_sem_seg_head(cfg, backbone.output_shape()),
            "criterion": build_set_criterion(cfg),
            "num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            "num_queries": cfg.MODEL.MASK_FORMER.NUM_OBJECT_QUERIES,
            "size_divisibility": cfg.MODEL.MASK_FORMER.SIZE_DIVISIBILITY,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "ml_use_gt": cfg.MODEL.RANKSEG.USE_GT,
            **rankseg_kwargs_from_config(cfg),
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def normalized(self, images: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        """(image - mean) / std for each uint8/float [C, H, W] image, on the model's device."""
        return [(x.to(self.device) - self.pixel_mean) / self.pixel_std for x in images]

    def classify(self, outputs: Dict, present: Optional[torch.Tensor]
                 ) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        """:func:`apply_oracle_and_ranking` with this model's RankSeg modules (in place on ``outputs``)."""
        class_embedding = None
        if self.ml_head is not None and self.ml_share_embedding:
            class_embedding = self.sem_seg_head.predictor.class_embed.weight[:-1]
        return apply_oracle_and_ranking(
            outputs, present=present, use_gt=self.ml_use_gt, ml_head=self.ml_head, ml_norm=self.ml_norm,
            topk=self.ml_topk, class_embedding=class_embedding,
        )

    def weighted_losses(self, outputs: Dict, targets: List[Dict[str, torch.Tensor]],
                        image_logits: Optional[torch.Tensor], topk_index: Optional[torch.Tensor],
                        present: Optional[torch.Tensor]) -> Dict[str, torch.Tensor]:
        """:func:`mask_classification_losses` with this model's criterion and multi-label loss."""
        return mask_classification_losses(
            self.criterion, outputs, targets, num_classes=self.num_classes, image_logits=image_logits,
            topk_index=topk_index, present=present, ml_loss=self.ml_loss, ml_loss_weight=self.ml_loss_weight,
        )

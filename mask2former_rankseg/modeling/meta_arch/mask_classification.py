"""What the image (``MaskFormer``) and video (``VideoMaskFormer``) mask-classification models share: their
common state and config (:class:`MaskClassificationModel`) and the criterion built from the config. RankSeg's
steps on the transformer decoder's outputs (oracle, ranking, rank-adaptive rescaling, target remapping,
multi-label loss) are :mod:`..rankseg.wiring`'s; the model calls them with its modules."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ..build import build_backbone, build_sem_seg_head
from ..criterion import SetCriterion
from ..matcher import HungarianMatcher
from ..rankseg import (
    apply_oracle_and_ranking,
    check_rankseg_args,
    multilabel_loss,
    ranked_targets,
    rankseg_kwargs_from_config,
)


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
        """The constructor arguments above, from the config (backbone, head and criterion built; RankSeg's
        multi-label head built for query tokens of MODEL.SEM_SEG_HEAD.CONVS_DIM channels, as upstream's)."""
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
            **rankseg_kwargs_from_config(cfg, cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM),
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
        """The criterion's losses weighted by its ``weight_dict`` (losses not in it are dropped), on targets
        remapped to rank positions with RankSeg (:func:`ranked_targets`), plus RankSeg's ``loss_ml``
        (:func:`multilabel_loss` of ``image_logits`` [B, K] against ``present`` [B, K])."""
        losses = self.criterion(outputs, ranked_targets(targets, topk_index, self.num_classes))
        weighted = {k: v * self.criterion.weight_dict[k] for k, v in losses.items() if k in self.criterion.weight_dict}
        if image_logits is not None:
            weighted["loss_ml"] = multilabel_loss(self.ml_loss, image_logits, present, self.ml_loss_weight)
        return weighted

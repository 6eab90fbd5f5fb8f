"""RankSeg: image-level category ranking, top-k selection, rank-adaptive classification."""

from .losses import AsymmetricLoss
from .multilabel_head import MultiLabelHead
from .selection import gather_ranked, present_classes, remap_targets, scatter_back, select_topk, suppress_absent

__all__ = [
    "AsymmetricLoss",
    "MultiLabelHead",
    "gather_ranked",
    "present_classes",
    "remap_targets",
    "scatter_back",
    "select_topk",
    "suppress_absent",
]

"""RankSeg: image-level category ranking, top-k selection, rank-adaptive classification, and its wiring into the
segmenters (:mod:`.wiring`)."""

from .losses import AsymmetricLoss
from .multilabel_head import MultiLabelHead
from .selection import (
    check_topk,
    gather_ranked,
    present_classes,
    remap_targets,
    scatter_back,
    select_topk,
    suppress_absent,
)
from .wiring import (
    QUERY_ARCHITECTURES,
    QUERY_LAYER,
    apply_oracle_and_ranking,
    check_rankseg_args,
    check_rankseg_config,
    multilabel_loss,
    multilabel_result,
    rank_categories,
    ranked_targets,
    rankseg_kwargs_from_config,
)

__all__ = [
    "AsymmetricLoss",
    "MultiLabelHead",
    "QUERY_ARCHITECTURES",
    "QUERY_LAYER",
    "apply_oracle_and_ranking",
    "check_rankseg_args",
    "check_rankseg_config",
    "check_topk",
    "gather_ranked",
    "multilabel_loss",
    "multilabel_result",
    "present_classes",
    "rank_categories",
    "ranked_targets",
    "rankseg_kwargs_from_config",
    "remap_targets",
    "scatter_back",
    "select_topk",
    "suppress_absent",
]

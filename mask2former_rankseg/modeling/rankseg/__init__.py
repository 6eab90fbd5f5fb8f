"""RankSeg: image-level category ranking, top-k selection, rank-adaptive classification (mask classification and
the per-pixel selected-label classifier), and its wiring into the segmenters (:mod:`.wiring`)."""

from .losses import AsymmetricLoss
from .multilabel_head import MultiLabelHead
from .pixel_classifier import SelectedLabelClassifier
from .selection import (
    check_topk,
    gather_ranked,
    present_classes,
    present_in_label_maps,
    remap_pixel_labels,
    remap_targets,
    scatter_back,
    scatter_back_maps,
    select_topk,
    suppress_absent,
    suppress_absent_maps,
)
from .wiring import (
    QUERY_ARCHITECTURES,
    QUERY_LAYER,
    apply_oracle_and_ranking,
    build_multilabel_loss,
    check_rankseg_args,
    check_rankseg_config,
    multilabel_loss,
    multilabel_result,
    pixel_rankseg_kwargs_from_config,
    rank_categories,
    ranked_targets,
    rankseg_kwargs_from_config,
    rankseg_settings_from_config,
)

__all__ = [
    "AsymmetricLoss",
    "MultiLabelHead",
    "QUERY_ARCHITECTURES",
    "QUERY_LAYER",
    "apply_oracle_and_ranking",
    "build_multilabel_loss",
    "check_rankseg_args",
    "check_rankseg_config",
    "check_topk",
    "gather_ranked",
    "multilabel_loss",
    "multilabel_result",
    "SelectedLabelClassifier",
    "pixel_rankseg_kwargs_from_config",
    "present_classes",
    "present_in_label_maps",
    "remap_pixel_labels",
    "scatter_back_maps",
    "suppress_absent_maps",
    "rank_categories",
    "ranked_targets",
    "rankseg_kwargs_from_config",
    "rankseg_settings_from_config",
    "remap_targets",
    "scatter_back",
    "select_topk",
    "suppress_absent",
]

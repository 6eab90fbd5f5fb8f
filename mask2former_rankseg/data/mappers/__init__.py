"""Dataset mappers: dataset dict -> model input dict."""

from .inference import InferenceDatasetMapper
from .panoptic import MaskFormerPanopticDatasetMapper, panoptic_to_instances
from .semantic import MaskFormerSemanticDatasetMapper, semantic_to_instances

TRAIN_MAPPERS = {
    "mask_former_semantic": MaskFormerSemanticDatasetMapper,
    "mask_former_panoptic": MaskFormerPanopticDatasetMapper,
}
"""``INPUT.DATASET_MAPPER_NAME`` -> training mapper class (built with ``from_config(cfg, True)``)."""

__all__ = [
    "InferenceDatasetMapper",
    "MaskFormerPanopticDatasetMapper",
    "MaskFormerSemanticDatasetMapper",
    "TRAIN_MAPPERS",
    "panoptic_to_instances",
    "semantic_to_instances",
]

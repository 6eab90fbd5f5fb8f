"""Dataset mappers: dataset dict -> model input dict."""

from .inference import InferenceDatasetMapper
from .instance import MaskFormerInstanceDatasetMapper, segmentation_to_mask
from .lsj import COCOInstanceNewBaselineDatasetMapper, COCOPanopticNewBaselineDatasetMapper, lsj_augmentations
from .panoptic import MaskFormerPanopticDatasetMapper, panoptic_to_instances
from .semantic import MaskFormerSemanticDatasetMapper, semantic_to_instances

TRAIN_MAPPERS = {
    "mask_former_semantic": MaskFormerSemanticDatasetMapper,
    "mask_former_panoptic": MaskFormerPanopticDatasetMapper,
    "mask_former_instance": MaskFormerInstanceDatasetMapper,
    "coco_panoptic_lsj": COCOPanopticNewBaselineDatasetMapper,
    "coco_instance_lsj": COCOInstanceNewBaselineDatasetMapper,
}
"""``INPUT.DATASET_MAPPER_NAME`` -> training mapper class (built with ``from_config(cfg, True)``)."""

__all__ = [
    "COCOInstanceNewBaselineDatasetMapper",
    "COCOPanopticNewBaselineDatasetMapper",
    "InferenceDatasetMapper",
    "MaskFormerInstanceDatasetMapper",
    "MaskFormerPanopticDatasetMapper",
    "MaskFormerSemanticDatasetMapper",
    "TRAIN_MAPPERS",
    "lsj_augmentations",
    "panoptic_to_instances",
    "segmentation_to_mask",
    "semantic_to_instances",
]

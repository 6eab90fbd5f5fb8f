"""Dataset mappers: dataset dict -> model input dict."""

from .inference import InferenceDatasetMapper
from .instance import MaskFormerInstanceDatasetMapper, segmentation_to_mask
from .lsj import COCOInstanceNewBaselineDatasetMapper, COCOPanopticNewBaselineDatasetMapper, lsj_augmentations
from .panoptic import MaskFormerPanopticDatasetMapper, panoptic_to_instances
from .semantic import MaskFormerSemanticDatasetMapper, semantic_to_instances
from .video_clip import apply_clip_augmentations, build_clip_augmentations, sample_clip_frames
from .vspw import VSPWDatasetMapper
from .ytvis import YTVISDatasetMapper, clip_tracks_to_instances

TRAIN_MAPPERS = {
    "mask_former_semantic": MaskFormerSemanticDatasetMapper,
    "mask_former_panoptic": MaskFormerPanopticDatasetMapper,
    "mask_former_instance": MaskFormerInstanceDatasetMapper,
    "coco_panoptic_lsj": COCOPanopticNewBaselineDatasetMapper,
    "coco_instance_lsj": COCOInstanceNewBaselineDatasetMapper,
}
"""``INPUT.DATASET_MAPPER_NAME`` -> training mapper class (built with ``from_config(cfg, True)``)."""

VIDEO_MAPPERS = {
    "ytvis": YTVISDatasetMapper,
    "vspw": VSPWDatasetMapper,
}
"""Video dataset ``evaluator_type`` -> mapper class, for training and inference (``from_config(cfg, is_train)``);
chosen by the dataset, as upstream's train_net_video.py does (video configs leave DATASET_MAPPER_NAME unset)."""

__all__ = [
    "COCOInstanceNewBaselineDatasetMapper",
    "COCOPanopticNewBaselineDatasetMapper",
    "InferenceDatasetMapper",
    "MaskFormerInstanceDatasetMapper",
    "MaskFormerPanopticDatasetMapper",
    "MaskFormerSemanticDatasetMapper",
    "TRAIN_MAPPERS",
    "VIDEO_MAPPERS",
    "VSPWDatasetMapper",
    "YTVISDatasetMapper",
    "apply_clip_augmentations",
    "build_clip_augmentations",
    "clip_tracks_to_instances",
    "sample_clip_frames",
    "lsj_augmentations",
    "panoptic_to_instances",
    "segmentation_to_mask",
    "semantic_to_instances",
]

"""detectron2-style transforms (deterministic) and augmentations (sample a transform); mmsegmentation's training
augmentations in ``mmseg_augmentation``."""

from .augmentation import (
    Augmentation,
    FixedSizeCrop,
    RandomBrightness,
    RandomContrast,
    RandomCrop,
    RandomCrop_CategoryAreaConstraint,
    RandomFlip,
    RandomSaturation,
    ResizeScale,
    ResizeShortestEdge,
    apply_augmentations,
    apply_augmentations_with_maps,
)
from .mmseg_augmentation import (
    CV2ResizeTransform,
    PhotoMetricDistortion,
    PhotoMetricDistortionTransform,
    RandomCropCatMaxRatio,
    RatioRangeResize,
    rescale_size,
)
from .transform import (
    BlendTransform,
    ColorAugSSDTransform,
    CropTransform,
    HFlipTransform,
    NoOpTransform,
    ResizeTransform,
    Transform,
    VFlipTransform,
)

__all__ = [
    "Augmentation",
    "BlendTransform",
    "CV2ResizeTransform",
    "FixedSizeCrop",
    "PhotoMetricDistortion",
    "PhotoMetricDistortionTransform",
    "RandomBrightness",
    "RandomContrast",
    "RandomCrop",
    "RandomCropCatMaxRatio",
    "RandomCrop_CategoryAreaConstraint",
    "RandomFlip",
    "RandomSaturation",
    "RatioRangeResize",
    "ResizeScale",
    "ResizeShortestEdge",
    "apply_augmentations",
    "apply_augmentations_with_maps",
    "rescale_size",
    "ColorAugSSDTransform",
    "CropTransform",
    "HFlipTransform",
    "NoOpTransform",
    "ResizeTransform",
    "Transform",
    "VFlipTransform",
]

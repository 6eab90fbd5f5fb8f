"""detectron2-style transforms (deterministic) and augmentations (sample a transform)."""

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
    "FixedSizeCrop",
    "RandomBrightness",
    "RandomContrast",
    "RandomCrop",
    "RandomCrop_CategoryAreaConstraint",
    "RandomFlip",
    "RandomSaturation",
    "ResizeScale",
    "ResizeShortestEdge",
    "apply_augmentations",
    "apply_augmentations_with_maps",
    "ColorAugSSDTransform",
    "CropTransform",
    "HFlipTransform",
    "NoOpTransform",
    "ResizeTransform",
    "Transform",
    "VFlipTransform",
]

"""detectron2-style transforms (deterministic) and augmentations (sample a transform)."""

from .augmentation import (
    Augmentation,
    FixedSizeCrop,
    RandomCrop,
    RandomCrop_CategoryAreaConstraint,
    RandomFlip,
    ResizeScale,
    ResizeShortestEdge,
    apply_augmentations,
    apply_augmentations_with_maps,
)
from .transform import (
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
    "FixedSizeCrop",
    "RandomCrop",
    "RandomCrop_CategoryAreaConstraint",
    "RandomFlip",
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

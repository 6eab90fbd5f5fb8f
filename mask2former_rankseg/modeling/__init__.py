"""Models: backbones, pixel decoders, transformer decoders, per-pixel heads, RankSeg, meta-architectures.

Importing this package registers every built-in part in the registries of :mod:`.registry`.
"""

from . import backbone, heads, meta_arch, pixel_decoder, transformer_decoder  # noqa: F401  (registration)
from .build import build_backbone, build_model, build_sem_seg_head, validate_model_config
from .registry import (
    BACKBONE_REGISTRY,
    META_ARCH_REGISTRY,
    PIXEL_DECODER_REGISTRY,
    SEM_SEG_HEAD_REGISTRY,
    TRANSFORMER_DECODER_REGISTRY,
)

__all__ = [
    "build_model",
    "build_backbone",
    "build_sem_seg_head",
    "validate_model_config",
    "BACKBONE_REGISTRY",
    "META_ARCH_REGISTRY",
    "PIXEL_DECODER_REGISTRY",
    "SEM_SEG_HEAD_REGISTRY",
    "TRANSFORMER_DECODER_REGISTRY",
]

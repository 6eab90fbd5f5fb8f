"""Meta-architectures and heads (importing registers them)."""

from .mask_former_head import MaskFormerHead
from .maskformer import MaskFormer, semantic_inference

__all__ = ["MaskFormer", "MaskFormerHead", "semantic_inference"]

"""Meta-architectures and heads (importing registers them)."""

from .mask_former_head import MaskFormerHead
from .maskformer import MaskFormer
from .postprocess import instance_inference, panoptic_inference, semantic_inference

__all__ = ["MaskFormer", "MaskFormerHead", "instance_inference", "panoptic_inference", "semantic_inference"]

"""Meta-architectures and heads (importing registers them)."""

from .mask_former_head import MaskFormerHead
from .maskformer import MaskFormer
from .postprocess import instance_inference, panoptic_inference, semantic_inference
from .video_maskformer import VideoMaskFormer
from .video_postprocess import video_instance_inference, video_semantic_inference

__all__ = [
    "MaskFormer",
    "MaskFormerHead",
    "VideoMaskFormer",
    "instance_inference",
    "panoptic_inference",
    "semantic_inference",
    "video_instance_inference",
    "video_semantic_inference",
]

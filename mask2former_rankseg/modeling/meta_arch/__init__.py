"""Meta-architectures and heads (importing registers them)."""

from .grouped_scores import GroupedScores
from .mask_former_head import MaskFormerHead
from .maskformer import MaskFormer
from .postprocess import instance_inference, panoptic_inference, semantic_inference, semantic_labels
from .semantic_seg import SemanticSegmentor
from .video_maskformer import VideoMaskFormer
from .video_postprocess import video_instance_inference, video_semantic_inference

__all__ = [
    "GroupedScores",
    "MaskFormer",
    "MaskFormerHead",
    "SemanticSegmentor",
    "VideoMaskFormer",
    "instance_inference",
    "panoptic_inference",
    "semantic_inference",
    "semantic_labels",
    "video_instance_inference",
    "video_semantic_inference",
]

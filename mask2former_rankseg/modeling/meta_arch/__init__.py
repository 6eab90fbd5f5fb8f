"""Meta-architectures and heads (importing registers them)."""

from .grouped_scores import GroupedScores
from .mask_former_head import MaskFormerHead
from .maskformer import MaskFormer
from .postprocess import instance_inference, panoptic_inference, semantic_inference, semantic_labels

__all__ = [
    "GroupedScores",
    "MaskFormer",
    "MaskFormerHead",
    "instance_inference",
    "panoptic_inference",
    "semantic_inference",
    "semantic_labels",
]

"""Transformer decoders (importing registers them in ``TRANSFORMER_DECODER_REGISTRY``)."""

from .mask2former_transformer_decoder import MultiScaleMaskedTransformerDecoder
from .maskformer_transformer_decoder import StandardTransformerDecoder
from .position_encoding import PositionEmbeddingSine, PositionEmbeddingSine3D
from .video_mask2former_transformer_decoder import VideoMultiScaleMaskedTransformerDecoder

__all__ = [
    "MultiScaleMaskedTransformerDecoder",
    "PositionEmbeddingSine",
    "PositionEmbeddingSine3D",
    "StandardTransformerDecoder",
    "VideoMultiScaleMaskedTransformerDecoder",
]

"""Transformer decoders (importing registers them in ``TRANSFORMER_DECODER_REGISTRY``)."""

from .mask2former_transformer_decoder import MultiScaleMaskedTransformerDecoder
from .position_encoding import PositionEmbeddingSine

__all__ = ["MultiScaleMaskedTransformerDecoder", "PositionEmbeddingSine"]

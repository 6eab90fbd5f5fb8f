"""Transformer decoders (importing registers them in ``TRANSFORMER_DECODER_REGISTRY``)."""

from .mask2former_transformer_decoder import MultiScaleMaskedTransformerDecoder
from .maskformer_transformer_decoder import StandardTransformerDecoder
from .position_encoding import PositionEmbeddingSine

__all__ = ["MultiScaleMaskedTransformerDecoder", "PositionEmbeddingSine", "StandardTransformerDecoder"]

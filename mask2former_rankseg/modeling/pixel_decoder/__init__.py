"""Pixel decoders (importing registers them in ``PIXEL_DECODER_REGISTRY``)."""

from .fpn import BasePixelDecoder, TransformerEncoderPixelDecoder
from .msdeformattn import MSDeformAttnPixelDecoder

__all__ = ["BasePixelDecoder", "MSDeformAttnPixelDecoder", "TransformerEncoderPixelDecoder"]

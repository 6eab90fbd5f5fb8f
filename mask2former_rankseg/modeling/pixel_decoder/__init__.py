"""Pixel decoders (importing registers them in ``PIXEL_DECODER_REGISTRY``)."""

from .msdeformattn import MSDeformAttnPixelDecoder

__all__ = ["MSDeformAttnPixelDecoder"]

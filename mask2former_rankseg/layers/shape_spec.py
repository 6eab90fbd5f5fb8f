"""What a stage produces: channels and stride of a feature map."""

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class ShapeSpec:
    """Shape of a feature map without the batch dimension.

    Attributes:
        channels: number of channels C.
        height, width: spatial size when known.
        stride: input pixels per feature-map pixel.
    """

    channels: Optional[int] = None
    height: Optional[int] = None
    width: Optional[int] = None
    stride: Optional[int] = None

"""``Conv2d`` with an optional norm and activation, and detectron2's weight fills."""

from typing import Callable, Optional

import torch
from torch import nn

from .weight_init import c2_msra_fill, c2_xavier_fill

__all__ = ["Conv2d", "c2_msra_fill", "c2_xavier_fill"]


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` followed by ``norm`` (a module, kept as ``.norm``) and ``activation``."""

    def __init__(self, *args, norm: Optional[nn.Module] = None,
                 activation: Optional[Callable[[torch.Tensor], torch.Tensor]] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.norm = norm
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._conv_forward(x, self.weight, self.bias)
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x

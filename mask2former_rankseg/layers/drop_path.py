"""Stochastic depth ("drop path"): drop a residual branch for whole samples during training."""

from __future__ import annotations

import torch
from torch import nn


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Zero the whole of ``x`` for each sample with probability ``p`` and scale the kept ones by 1/(1-p).

    Args:
        x: [B, ...] a residual branch's output.
        p: drop probability in [0, 1).
        training: identity when False (or ``p == 0``).
    """
    if not training or p == 0.0:
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * mask / keep


class DropPath(nn.Module):
    """:func:`drop_path` as a module (no parameters, so it does not appear in state dicts)."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"

"""Sine positional encodings: 2-D for a feature map (DETR's ``PositionEmbeddingSine``) and 3-D for a clip of
feature maps (Video Mask2Former's ``PositionEmbeddingSine3D``)."""

import math
from typing import Optional

import torch
from torch import nn

_EPS = 1e-6


def _sine_encode(coords: torch.Tensor, num_feats: int, temperature: float) -> torch.Tensor:
    """Encode coordinates [...] as [..., num_feats]: sin/cos pairs at wavelengths ``temperature ** (2i / F)``."""
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=coords.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)
    phase = coords[..., None] / dim_t
    return torch.stack((phase[..., 0::2].sin(), phase[..., 1::2].cos()), dim=-1).flatten(-2)


def _cumulative_coords(not_mask: torch.Tensor, dim: int, normalize: bool, scale: float) -> torch.Tensor:
    """1-based positions along ``dim`` of the unpadded cells, optionally scaled so the last one is ``scale``."""
    coords = not_mask.cumsum(dim, dtype=torch.float32)
    if normalize:
        coords = coords / (coords.narrow(dim, coords.shape[dim] - 1, 1) + _EPS) * scale
    return coords


class PositionEmbeddingSine(nn.Module):
    """Fixed 2-D sine/cosine encoding.

    Args:
        num_pos_feats: features per axis; the output has ``2 * num_pos_feats`` channels.
        temperature: wavelength base.
        normalize: scale coordinates to [0, scale] before encoding.
        scale: used with ``normalize`` (default 2*pi).
    """

    def __init__(self, num_pos_feats: int = 64, temperature: int = 10000, normalize: bool = False,
                 scale: Optional[float] = None):
        super().__init__()
        if scale is not None and not normalize:
            raise ValueError(f"{type(self).__name__}: scale is only used with normalize=True.")
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale

    def _encode_yx(self, not_mask: torch.Tensor) -> torch.Tensor:
        """not_mask [..., H, W] -> [..., H, W, 2 * num_pos_feats] (y features first, then x)."""
        y_embed = _cumulative_coords(not_mask, not_mask.dim() - 2, self.normalize, self.scale)
        x_embed = _cumulative_coords(not_mask, not_mask.dim() - 1, self.normalize, self.scale)
        return torch.cat((_sine_encode(y_embed, self.num_pos_feats, self.temperature),
                          _sine_encode(x_embed, self.num_pos_feats, self.temperature)), dim=-1)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x: [B, C, H, W]; mask: [B, H, W] True on padding. Returns [B, 2*num_pos_feats, H, W]."""
        if mask is None:
            mask = torch.zeros((x.size(0), x.size(2), x.size(3)), device=x.device, dtype=torch.bool)
        return self._encode_yx(~mask).permute(0, 3, 1, 2).to(x.dtype)


class PositionEmbeddingSine3D(PositionEmbeddingSine):
    """Fixed 3-D encoding of a clip: the 2-D encoding of (y, x) plus a sine encoding of the frame index with
    ``2 * num_pos_feats`` features (added, not concatenated, so the width stays ``2 * num_pos_feats``).

    With ``normalize`` the frame index is scaled by the clip's length like y and x by the map's size, so the
    encoding depends on the number of frames T of the clip it is given.
    """

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x: [B, T, C, H, W]; mask: [B, T, H, W] True on padding. Returns [B, T, 2*num_pos_feats, H, W]."""
        if x.dim() != 5:
            raise ValueError(f"PositionEmbeddingSine3D expects [B, T, C, H, W], got shape {tuple(x.shape)}.")
        if mask is None:
            mask = torch.zeros((x.size(0), x.size(1), x.size(3), x.size(4)), device=x.device, dtype=torch.bool)
        not_mask = ~mask
        z_embed = _cumulative_coords(not_mask, 1, self.normalize, self.scale)
        pos = self._encode_yx(not_mask) + _sine_encode(z_embed, 2 * self.num_pos_feats, self.temperature)
        return pos.permute(0, 1, 4, 2, 3).to(x.dtype)

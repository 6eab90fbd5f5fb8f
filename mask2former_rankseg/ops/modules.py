"""``MSDeformAttn``: the multi-scale deformable attention layer (Deformable DETR), upstream's names."""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from .dispatch import ms_deform_attn


class MSDeformAttn(nn.Module):
    """Each query attends to ``n_points`` learned offsets around its reference point on every level.

    Args:
        d_model: channels C.
        n_levels: feature levels L.
        n_heads: attention heads H (C must be divisible by H).
        n_points: sampling points P per head and level.
    """

    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4):
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"MSDeformAttn: d_model={d_model} must be divisible by n_heads={n_heads}.")
        self.d_model = d_model
        self.n_levels = n_levels
        self.n_heads = n_heads
        self.n_points = n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        nn.init.zeros_(self.sampling_offsets.weight)
        # Initial offsets: head h points in direction 2*pi*h/H; point p sits at distance p+1.
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        directions = torch.stack([thetas.cos(), thetas.sin()], -1)
        directions = directions / directions.abs().max(-1, keepdim=True).values
        scale = torch.arange(1, self.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        grid = directions.view(self.n_heads, 1, 1, 2) * scale
        grid = grid.expand(self.n_heads, self.n_levels, self.n_points, 2)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.reshape(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        input_flatten: torch.Tensor,
        input_spatial_shapes: torch.Tensor,
        input_level_start_index: torch.Tensor,
        input_padding_mask: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """
        Args:
            query: [N, Q, C].
            reference_points: [N, Q, L, 2] points (x, y) in [0, 1], or [N, Q, L, 4] boxes (cx, cy, w, h); a
                point's offsets are in pixels of each level, a box's in units of half its size / n_points.
            input_flatten: [N, S, C] all levels flattened.
            input_spatial_shapes: [L, 2] (H_l, W_l); input_level_start_index: [L].
            input_padding_mask: [N, S], True on padding.
        Returns:
            [N, Q, C].
        """
        n, num_q, _ = query.shape
        _, num_in, _ = input_flatten.shape
        if input_spatial_shapes.shape[0] != self.n_levels:
            raise ValueError(
                f"MSDeformAttn: built for n_levels={self.n_levels} but input_spatial_shapes has "
                f"{input_spatial_shapes.shape[0]} levels."
            )
        if (reference_points.dim() != 4 or tuple(reference_points.shape[:2]) != (n, num_q)
                or reference_points.shape[2] not in (1, self.n_levels)):
            raise ValueError(
                f"MSDeformAttn: reference_points must be [N, Lq, L, 2 or 4]=[{n}, {num_q}, {self.n_levels}, 2|4] "
                f"(L may be 1, shared by all levels), got shape {tuple(reference_points.shape)}."
            )
        if input_padding_mask is not None and tuple(input_padding_mask.shape) != (n, num_in):
            raise ValueError(
                f"MSDeformAttn: input_padding_mask must be [N, S]=[{n}, {num_in}], got "
                f"{tuple(input_padding_mask.shape)}."
            )
        value = self.value_proj(input_flatten)
        if input_padding_mask is not None:
            value = value.masked_fill(input_padding_mask[..., None], 0.0)
        value = value.view(n, num_in, self.n_heads, self.d_model // self.n_heads)
        offsets, weights = self._offsets_and_weights(query)
        if reference_points.shape[-1] == 2:
            normalizer = torch.stack([input_spatial_shapes[..., 1], input_spatial_shapes[..., 0]], -1)
            locations = reference_points[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None, :]
        elif reference_points.shape[-1] == 4:
            locations = (reference_points[:, :, None, :, None, :2]
                         + offsets / self.n_points * reference_points[:, :, None, :, None, 2:] * 0.5)
        else:
            raise ValueError(
                f"MSDeformAttn: reference_points must end in 2 (points) or 4 (boxes) values, got "
                f"{reference_points.shape[-1]}."
            )
        out = ms_deform_attn(value, input_spatial_shapes, input_level_start_index, locations, weights)
        return self.output_proj(out)

    def _offsets_and_weights(self, query: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Sampling offsets [N, Lq, H, L, P, 2] and attention weights [N, Lq, H, L, P], in float32 also under
        autocast (MODEL.PRECISION bf16): a bfloat16 offset of a few pixels is off by up to 1/256 of its size, and
        the locations built from it are what the kernel samples at (it keeps them in float32)."""
        if torch.is_autocast_enabled(query.device.type):
            with torch.autocast(device_type=query.device.type, enabled=False):
                return self._offsets_and_weights(query.float())
        n, num_q = query.shape[:2]
        offsets = self.sampling_offsets(query).view(n, num_q, self.n_heads, self.n_levels, self.n_points, 2)
        weights = self.attention_weights(query).view(n, num_q, self.n_heads, self.n_levels * self.n_points)
        weights = F.softmax(weights, -1).view(n, num_q, self.n_heads, self.n_levels, self.n_points)
        return offsets, weights

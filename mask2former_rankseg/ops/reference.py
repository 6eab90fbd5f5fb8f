"""Pure-PyTorch multi-scale deformable attention (the oracle and the portable fallback)."""

from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
from torch.nn import functional as F


def ms_deform_attn_reference(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor | Sequence[Tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Bilinear sampling of every level at the given locations, weighted and summed.

    Args:
        value: [N, S, H, D] values of all levels, flattened and concatenated (S = sum_l H_l * W_l).
        spatial_shapes: [L, 2] (H_l, W_l) per level.
        sampling_locations: [N, Q, H, L, P, 2] (x, y) in [0, 1] of each level (0 = left/top edge).
        attention_weights: [N, Q, H, L, P].
    Returns:
        [N, Q, H * D]. Samples outside a map read zeros (``grid_sample`` with zero padding,
        ``align_corners=False``).
    """
    n, _, heads, dim = value.shape
    _, q, _, levels, points, _ = sampling_locations.shape
    shapes: List[Tuple[int, int]] = [(int(h), int(w)) for h, w in spatial_shapes]
    value_per_level = value.split([h * w for h, w in shapes], dim=1)
    grids = 2 * sampling_locations - 1
    sampled = []
    for level, (h, w) in enumerate(shapes):
        # [N, HW, H, D] -> [N*H, D, h, w]
        v = value_per_level[level].flatten(2).transpose(1, 2).reshape(n * heads, dim, h, w)
        # [N, Q, H, P, 2] -> [N*H, Q, P, 2]
        g = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        sampled.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False))
    # [N*H, D, Q, L*P] weighted by [N*H, 1, Q, L*P]
    weights = attention_weights.transpose(1, 2).reshape(n * heads, 1, q, levels * points)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * weights).sum(-1)
    return out.view(n, heads * dim, q).transpose(1, 2).contiguous()

"""Point sampling of mask logits (PointRend's helpers, used by the matcher and the criterion)."""

from __future__ import annotations

from typing import Callable

import torch
from torch.nn import functional as F


def point_sample(input: torch.Tensor, point_coords: torch.Tensor, **kwargs) -> torch.Tensor:  # noqa: A002
    """Bilinearly sample ``input`` [N, C, H, W] at ``point_coords`` [N, P, 2] ((x, y) in [0, 1]).

    Returns [N, C, P] (``align_corners=False`` unless given).
    """
    kwargs.setdefault("align_corners", False)
    add_dim = point_coords.dim() == 3
    grid = 2.0 * point_coords - 1.0
    if add_dim:
        grid = grid.unsqueeze(2)
    out = F.grid_sample(input, grid, **kwargs)
    return out.squeeze(3) if add_dim else out


def calculate_uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """Uncertainty of binary mask logits [R, 1, ...]: -|logit| (highest at the decision boundary)."""
    return -torch.abs(logits)


def get_uncertain_point_coords_with_randomness(
    coarse_logits: torch.Tensor,
    uncertainty_func: Callable[[torch.Tensor], torch.Tensor],
    num_points: int,
    oversample_ratio: float,
    importance_sample_ratio: float,
) -> torch.Tensor:
    """Points biased towards uncertain regions: of ``num_points``, ``importance_sample_ratio`` are the most
    uncertain of ``oversample_ratio * num_points`` random candidates and the rest are uniform.

    Args:
        coarse_logits: [R, 1, H, W] mask logits.
    Returns:
        [R, num_points, 2] coordinates in [0, 1].
    """
    if oversample_ratio < 1:
        raise ValueError(f"OVERSAMPLE_RATIO={oversample_ratio} must be >= 1.")
    if not 0 <= importance_sample_ratio <= 1:
        raise ValueError(f"IMPORTANCE_SAMPLE_RATIO={importance_sample_ratio} must lie in [0, 1].")
    num_boxes = coarse_logits.shape[0]
    num_sampled = int(num_points * oversample_ratio)
    candidates = torch.rand(num_boxes, num_sampled, 2, device=coarse_logits.device)
    uncertainties = uncertainty_func(point_sample(coarse_logits, candidates))
    num_uncertain = int(importance_sample_ratio * num_points)
    num_random = num_points - num_uncertain
    idx = torch.topk(uncertainties[:, 0, :], k=num_uncertain, dim=1).indices
    chosen = torch.gather(candidates, 1, idx.unsqueeze(-1).expand(-1, -1, 2))
    if num_random > 0:
        chosen = torch.cat([chosen, torch.rand(num_boxes, num_random, 2, device=coarse_logits.device)], dim=1)
    return chosen

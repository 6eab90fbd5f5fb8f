"""Hungarian matching of predicted masks to ground-truth segments on sampled points."""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import torch
from scipy.optimize import linear_sum_assignment
from torch import nn
from torch.nn import functional as F

from .point_sample import point_sample


def batch_dice_cost(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Dice cost between every prediction [N, P] (logits) and target [M, P] (0/1): [N, M]."""
    inputs = inputs.sigmoid()
    numerator = 2 * inputs @ targets.T
    denominator = inputs.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (numerator + 1) / (denominator + 1)


def batch_sigmoid_ce_cost(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy between every prediction [N, P] and target [M, P]: [N, M]."""
    pos = F.binary_cross_entropy_with_logits(inputs, torch.ones_like(inputs), reduction="none")
    neg = F.binary_cross_entropy_with_logits(inputs, torch.zeros_like(inputs), reduction="none")
    return (pos @ targets.T + neg @ (1 - targets).T) / inputs.shape[1]


class HungarianMatcher(nn.Module):
    """One-to-one assignment of queries to targets minimising
    ``cost_class * (-p(class)) + cost_mask * BCE + cost_dice * dice`` (mask costs on ``num_points`` random
    points, drawn per image and shared by all its predictions and targets), solved per image with
    ``scipy.optimize.linear_sum_assignment``. Costs are computed in float32 with autocast disabled.

    Clips (Video Mask2Former's matcher): with masks [Q, T, H, W] the same points are sampled in every frame
    and the mask costs are taken over all T x ``num_points`` samples, so a query is matched to a track for the
    whole clip.

    Args:
        cost_class, cost_mask, cost_dice: weights of the three costs (not all 0).
        num_points: points sampled per image for the mask costs (must be > 0 when a mask cost is used;
            upstream's configs use 112 * 112 = 12544).
    """

    def __init__(self, cost_class: float = 1.0, cost_mask: float = 1.0, cost_dice: float = 1.0, num_points: int = 0):
        super().__init__()
        if cost_class == 0 and cost_mask == 0 and cost_dice == 0:
            raise ValueError("HungarianMatcher: all costs are 0.")
        self.cost_class = cost_class
        self.cost_mask = cost_mask
        self.cost_dice = cost_dice
        self.num_points = num_points

    @torch.no_grad()
    def forward(self, outputs: Dict[str, torch.Tensor], targets: Sequence[Dict[str, torch.Tensor]]
                ) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """
        Args:
            outputs: "pred_logits" [B, Q, C+1], "pred_masks" [B, Q, H, W] (images) or [B, Q, T, H, W] (clips).
            targets: per image or clip "labels" [M] (indices into the logits' class axis), "masks" [M, H', W']
                or [M, T, H', W'].
        Returns:
            per image (query indices, target indices), int64, of length min(Q, M).
        """
        logits, masks = outputs["pred_logits"], outputs["pred_masks"]
        if self.num_points <= 0 and (self.cost_mask != 0 or self.cost_dice != 0):
            raise ValueError(
                f"HungarianMatcher: num_points={self.num_points} (MODEL.MASK_FORMER.TRAIN_NUM_POINTS) must be > 0 "
                "when cost_mask or cost_dice is non-zero."
            )
        indices = []
        for b in range(logits.shape[0]):
            labels = targets[b]["labels"]
            if labels.numel() == 0:
                empty = torch.empty(0, dtype=torch.int64)
                indices.append((empty, empty.clone()))
                continue
            with torch.autocast(device_type=logits.device.type, enabled=False):
                prob = logits[b].float().softmax(-1)
                cost = self.cost_class * -prob[:, labels]  # [Q, M]
                if self.cost_mask != 0 or self.cost_dice != 0:
                    out_points, tgt_points = self._sample_points(masks[b].float(), targets[b]["masks"], b)
                    cost = (self.cost_mask * batch_sigmoid_ce_cost(out_points, tgt_points) + cost
                            + self.cost_dice * batch_dice_cost(out_points, tgt_points))
            cost = cost.cpu()
            if not torch.isfinite(cost).all():
                raise FloatingPointError(
                    f"HungarianMatcher: the matching cost of image {b} has NaN/Inf entries, i.e. the predicted "
                    "class logits or masks are not finite (training diverged?). Lower SOLVER.BASE_LR or enable "
                    "SOLVER.CLIP_GRADIENTS."
                )
            rows, cols = linear_sum_assignment(cost.numpy())
            indices.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
        return indices

    def _sample_points(self, out_mask: torch.Tensor, tgt_mask: torch.Tensor, index: int
                       ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Predicted [Q, *F, h, w] and target [M, *F, H, W] masks (F: no axis, or T frames) at the same
        ``num_points`` random points of every frame: [Q, F*P] logits and [M, F*P] targets."""
        if out_mask.dim() != tgt_mask.dim() or out_mask.shape[1:-2] != tgt_mask.shape[1:-2]:
            raise ValueError(
                f"HungarianMatcher: predicted masks {tuple(out_mask.shape)} and target masks "
                f"{tuple(tgt_mask.shape)} of item {index} differ in their frame axes (expected [Q, H, W] with "
                "[M, H, W], or [Q, T, H, W] with [M, T, H, W])."
            )
        out_mask = out_mask.reshape(out_mask.shape[0], -1, *out_mask.shape[-2:])  # [Q, F, h, w]
        tgt_mask = tgt_mask.to(out_mask).reshape(tgt_mask.shape[0], -1, *tgt_mask.shape[-2:])
        coords = torch.rand(1, self.num_points, 2, device=out_mask.device)
        tgt_points = point_sample(tgt_mask, coords.expand(tgt_mask.shape[0], -1, -1)).flatten(1)
        out_points = point_sample(out_mask, coords.expand(out_mask.shape[0], -1, -1)).flatten(1)
        return out_points, tgt_points

"""Hungarian matching of predicted masks to ground-truth segments: on sampled points with BCE (Mask2Former) or on
whole masks with focal cost (MaskFormer)."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from scipy.optimize import linear_sum_assignment
from torch import nn
from torch.nn import functional as F

from ..utils.precision import float32_region
from .point_sample import point_sample

POINT_SAMPLED_BCE = "point_sampled_bce"
"""Mask2Former's mask loss/cost: sigmoid BCE + dice on sampled points (``MODEL.MASK_FORMER.MASK_LOSS``)."""
FULL_MASK_FOCAL = "full_mask_focal"
"""MaskFormer's mask loss/cost: sigmoid focal loss + dice on whole masks."""
MASK_LOSSES = (POINT_SAMPLED_BCE, FULL_MASK_FOCAL)
FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 2.0
"""Focal-loss parameters of MaskFormer (RetinaNet's): positives weighted alpha, modulation (1 - p_t) ** gamma."""


def check_mask_loss(mask_loss: str) -> str:
    """Return ``mask_loss`` if it is one of :data:`MASK_LOSSES`, else raise naming the config key."""
    if mask_loss not in MASK_LOSSES:
        raise ValueError(f"MODEL.MASK_FORMER.MASK_LOSS={mask_loss!r} is not one of {list(MASK_LOSSES)} "
                         f"({POINT_SAMPLED_BCE!r}: Mask2Former, {FULL_MASK_FOCAL!r}: MaskFormer).")
    return mask_loss


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


def batch_sigmoid_focal_cost(inputs: torch.Tensor, targets: torch.Tensor, alpha: float = FOCAL_ALPHA,
                             gamma: float = FOCAL_GAMMA) -> torch.Tensor:
    """Mean sigmoid focal loss between every prediction [N, P] (logits) and target [M, P] (0/1): [N, M]."""
    prob = inputs.sigmoid()
    pos = (1 - prob) ** gamma * F.binary_cross_entropy_with_logits(inputs, torch.ones_like(inputs), reduction="none")
    neg = prob ** gamma * F.binary_cross_entropy_with_logits(inputs, torch.zeros_like(inputs), reduction="none")
    if alpha >= 0:
        pos, neg = pos * alpha, neg * (1 - alpha)
    return (pos @ targets.T + neg @ (1 - targets).T) / inputs.shape[1]


class HungarianMatcher(nn.Module):
    """One-to-one assignment of queries to targets minimising
    ``cost_class * (-p(class)) + cost_mask * mask_cost + cost_dice * dice``, solved per image with
    ``scipy.optimize.linear_sum_assignment``. Costs are computed in float32 with autocast disabled.

    The mask costs are either (``mask_loss="point_sampled_bce"``, Mask2Former) the mean BCE on ``num_points``
    random points, drawn per image and shared by all its predictions and targets, or
    (``"full_mask_focal"``, MaskFormer) the mean sigmoid focal loss on whole masks, the targets resized
    (nearest) to the predictions' resolution.

    Clips (Video Mask2Former's matcher): with masks [Q, T, H, W] the same points are sampled in every frame
    and the mask costs are taken over all T x ``num_points`` samples (or all T x h x w pixels), so a query is
    matched to a track for the whole clip.

    Args:
        cost_class, cost_mask, cost_dice: weights of the three costs (not all 0).
        num_points: points sampled per image for the point-sampled costs (must be > 0 when a mask cost is used;
            upstream's configs use 112 * 112 = 12544). Unused with ``"full_mask_focal"``.
        mask_loss: ``"point_sampled_bce"`` or ``"full_mask_focal"``.
    """

    def __init__(self, cost_class: float = 1.0, cost_mask: float = 1.0, cost_dice: float = 1.0, num_points: int = 0,
                 mask_loss: str = POINT_SAMPLED_BCE):
        super().__init__()
        if cost_class == 0 and cost_mask == 0 and cost_dice == 0:
            raise ValueError("HungarianMatcher: all costs are 0.")
        self.cost_class = cost_class
        self.cost_mask = cost_mask
        self.cost_dice = cost_dice
        self.num_points = num_points
        self.mask_loss = check_mask_loss(mask_loss)

    @torch.no_grad()
    @float32_region  # the costs in float32 under bfloat16 autocast
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
        uses_mask_costs = self.cost_mask != 0 or self.cost_dice != 0
        if self.mask_loss == POINT_SAMPLED_BCE and uses_mask_costs and self.num_points <= 0:
            raise ValueError(
                f"HungarianMatcher: num_points={self.num_points} (MODEL.MASK_FORMER.TRAIN_NUM_POINTS) must be > 0 "
                "when cost_mask or cost_dice is non-zero."
            )
        # Upstream draws each item's random points in turn, whether or not it has targets and whatever the cost
        # weights; so does this matcher (one [1, P, 2] draw per item, in order), so that a seeded run stays on
        # upstream's random stream. The sampling itself is batched.
        coords = None
        if self.mask_loss == POINT_SAMPLED_BCE and self.num_points > 0:
            coords = torch.cat([torch.rand(1, self.num_points, 2, device=masks.device) for _ in range(logits.shape[0])])
        matched = [b for b in range(logits.shape[0]) if targets[b]["labels"].numel() > 0]
        costs = {}
        with torch.autocast(device_type=logits.device.type, enabled=False):
            prob = logits.float().softmax(-1)  # [B, Q, C+1]
            flat = self._flatten_masks(masks.float(), targets, matched, coords) if uses_mask_costs else {}
            for b in matched:
                cost = self.cost_class * -prob[b][:, targets[b]["labels"]]  # [Q, M]
                if uses_mask_costs:
                    out_flat, tgt_flat = flat[b]
                    mask_cost = (batch_sigmoid_ce_cost if self.mask_loss == POINT_SAMPLED_BCE
                                 else batch_sigmoid_focal_cost)(out_flat, tgt_flat)
                    cost = self.cost_mask * mask_cost + cost + self.cost_dice * batch_dice_cost(out_flat, tgt_flat)
                costs[b] = cost.cpu()
        indices = []
        for b in range(logits.shape[0]):
            if b not in costs:
                empty = torch.empty(0, dtype=torch.int64)
                indices.append((empty, empty.clone()))
                continue
            if not torch.isfinite(costs[b]).all():
                raise FloatingPointError(
                    f"HungarianMatcher: the matching cost of image {b} has NaN/Inf entries, i.e. the predicted "
                    "class logits or masks are not finite (training diverged?). Lower SOLVER.BASE_LR or enable "
                    "SOLVER.CLIP_GRADIENTS."
                )
            rows, cols = linear_sum_assignment(costs[b].numpy())
            indices.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
        return indices

    def _flatten_masks(self, out_masks: torch.Tensor, targets: Sequence[Dict[str, torch.Tensor]],
                       items: Sequence[int], coords: Optional[torch.Tensor]
                       ) -> Dict[int, Tuple[torch.Tensor, torch.Tensor]]:
        """Predicted [B, Q, *F, h, w] and each item's target [M, *F, H, W] masks (F: no axis, or T frames) ->
        per item in ``items`` [Q, F*P] logits and [M, F*P] 0/1 values at the same P positions of every frame:
        the item's random points ``coords[b]`` (point-sampled BCE; one grid sample for all predictions and, when
        the targets share a size, one for all targets) or every pixel at the prediction's resolution
        (full-mask focal)."""
        batch, queries = out_masks.shape[:2]
        tgt_masks = {}
        for b in items:
            tgt = targets[b]["masks"]
            if out_masks.dim() - 1 != tgt.dim() or out_masks.shape[2:-2] != tgt.shape[1:-2]:
                raise ValueError(
                    f"HungarianMatcher: predicted masks {tuple(out_masks.shape[1:])} and target masks "
                    f"{tuple(tgt.shape)} of item {b} differ in their frame axes (expected [Q, H, W] with "
                    "[M, H, W], or [Q, T, H, W] with [M, T, H, W])."
                )
            tgt_masks[b] = tgt.to(out_masks).reshape(tgt.shape[0], -1, *tgt.shape[-2:])  # [M, F, H, W]
        out_masks = out_masks.reshape(batch, queries, -1, *out_masks.shape[-2:])  # [B, Q, F, h, w]
        if self.mask_loss == FULL_MASK_FOCAL:
            return {b: (out_masks[b].flatten(1),
                        F.interpolate(tgt_masks[b], size=out_masks.shape[-2:], mode="nearest").flatten(1))
                    for b in items}
        if not items:
            return {}
        out_points = point_sample(out_masks.flatten(1, 2), coords).reshape(batch, queries, -1)  # [B, Q, F*P]
        if len({tuple(t.shape[-2:]) for t in tgt_masks.values()}) == 1:  # one grid sample for every target
            counts = [tgt_masks[b].shape[0] for b in items]
            tgt_coords = coords[items].repeat_interleave(torch.as_tensor(counts, device=coords.device), dim=0)
            sampled = point_sample(torch.cat([tgt_masks[b] for b in items]), tgt_coords).flatten(1)
            tgt_points = dict(zip(items, sampled.split(counts)))
        else:
            tgt_points = {b: point_sample(t, coords[b].expand(t.shape[0], -1, -1)).flatten(1)
                          for b, t in tgt_masks.items()}
        return {b: (out_points[b], tgt_points[b]) for b in items}

"""``SetCriterion``: classification + mask losses (point-sampled BCE or full-mask focal, and dice) on matched pairs."""

from __future__ import annotations

import logging
from typing import Dict, List, Sequence, Tuple

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from ..utils.precision import float32_region
from .matcher import FOCAL_ALPHA, FOCAL_GAMMA, FULL_MASK_FOCAL, POINT_SAMPLED_BCE, check_mask_loss
from .point_sample import calculate_uncertainty, get_uncertain_point_coords_with_randomness, point_sample

logger = logging.getLogger(__name__)


def dice_loss(inputs: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    """Sum over masks of 1 - (2|p.t| + 1) / (|p| + |t| + 1), divided by ``num_masks``. inputs: logits [N, P]."""
    inputs = inputs.sigmoid()
    numerator = 2 * (inputs * targets).sum(-1)
    denominator = inputs.sum(-1) + targets.sum(-1)
    return (1 - (numerator + 1) / (denominator + 1)).sum() / num_masks


def sigmoid_ce_loss(inputs: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    """Sum over masks of the mean point-wise BCE, divided by ``num_masks``. inputs: logits [N, P]."""
    loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    return loss.mean(1).sum() / num_masks


def sigmoid_focal_loss(inputs: torch.Tensor, targets: torch.Tensor, num_masks: float, alpha: float = FOCAL_ALPHA,
                       gamma: float = FOCAL_GAMMA) -> torch.Tensor:
    """Sum over masks of the mean pixel-wise focal loss (RetinaNet's), divided by ``num_masks``.

    Per pixel: ``alpha_t * (1 - p_t) ** gamma * BCE``, with ``p_t`` the probability of the true value and
    ``alpha_t = alpha`` on positives, ``1 - alpha`` on negatives (no weighting when ``alpha < 0``).
    inputs: logits [N, P]; targets: 0/1 [N, P].
    """
    prob = inputs.sigmoid()
    ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.mean(1).sum() / num_masks


class SetCriterion(nn.Module):
    """Mask2Former's and MaskFormer's loss. The class axis of ``pred_logits`` may be the full K+1 or RankSeg's
    ranked k+1: the last column is always "no object", and unmatched queries are trained towards it with weight
    ``eos_coef``.

    The cross-entropy weights are the buffer ``empty_weight`` [K+1] (ones, ``eos_coef`` last; upstream's
    name, so official checkpoints carrying ``criterion.empty_weight`` load cleanly); logits with C columns
    use its last C entries.

    Args:
        num_classes: K (size of ``empty_weight``; the class count used per call is read off the logits).
        matcher: returns the matched (query, target) indices per image.
        weight_dict: loss name -> weight (used by the caller to weight and filter).
        eos_coef: weight of the "no object" class in the cross-entropy.
        losses: which losses to compute ("labels", "masks").
        num_points, oversample_ratio, importance_sample_ratio: point sampling of the mask losses (point-sampled
            BCE only).
        mask_loss: ``"point_sampled_bce"`` (Mask2Former: BCE and dice on ``num_points`` points biased to uncertain
            regions) or ``"full_mask_focal"`` (MaskFormer: sigmoid focal loss and dice on whole masks, predictions
            upsampled bilinearly to the targets' padded size).
    """

    def __init__(self, num_classes: int, matcher: nn.Module, weight_dict: Dict[str, float], eos_coef: float,
                 losses: Sequence[str], num_points: int = 0, oversample_ratio: float = 3.0,
                 importance_sample_ratio: float = 0.75, mask_loss: str = POINT_SAMPLED_BCE):
        super().__init__()
        unknown = set(losses) - {"labels", "masks"}
        if unknown:
            raise ValueError(f"SetCriterion: unknown losses {sorted(unknown)}; use 'labels' and/or 'masks'.")
        self.mask_loss = check_mask_loss(mask_loss)
        if "masks" in losses and mask_loss == POINT_SAMPLED_BCE and num_points <= 0:
            raise ValueError(
                f"SetCriterion: num_points={num_points} (MODEL.MASK_FORMER.TRAIN_NUM_POINTS) must be > 0 "
                "for the mask losses; upstream uses 112 * 112 = 12544."
            )
        self.num_classes = num_classes
        self.matcher = matcher
        self.weight_dict = weight_dict
        self.eos_coef = eos_coef
        self.losses = list(losses)
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = eos_coef
        self.register_buffer("empty_weight", empty_weight)

    def loss_labels(self, outputs, targets, indices, num_masks) -> Dict[str, torch.Tensor]:
        """Cross-entropy over the C columns of ``pred_logits`` [B, Q, C]; unmatched queries target C - 1."""
        logits = outputs["pred_logits"].float()  # [B, Q, C]
        num_columns = logits.shape[-1]
        batch_idx, query_idx = _src_permutation(indices)
        target_classes = torch.full(logits.shape[:2], num_columns - 1, dtype=torch.int64, device=logits.device)
        target_classes[batch_idx, query_idx] = torch.cat([t["labels"][j] for t, (_, j) in zip(targets, indices)])
        weight = self.empty_weight[-num_columns:].to(logits)
        return {"loss_ce": F.cross_entropy(logits.transpose(1, 2), target_classes, weight)}

    def loss_masks(self, outputs, targets, indices, num_masks) -> Dict[str, torch.Tensor]:
        """Mask losses of the matched pairs: ``loss_mask`` (BCE or focal) and ``loss_dice``.

        ``pred_masks`` [B, Q, h, w] (e.g. 1/4 resolution) and target ``masks`` [N, H, W]; targets of different
        sizes are zero-padded (bottom/right) to a common size first, as upstream's ``nested_tensor_from_tensor_list``
        does. Point-sampled BCE samples both at the same normalised coordinates, ``num_points`` per mask, biased to
        uncertain prediction points; full-mask focal upsamples the predictions to the target size.

        Clips: with ``pred_masks`` [B, Q, T, h, w] and target ``masks`` [N, T, H, W] every frame of a matched
        pair is one mask (with its own points, for point-sampled BCE), as Video Mask2Former's loss: the losses
        are summed over the frames and still divided by ``num_masks``, the number of tracks.
        """
        batch_idx, query_idx = _src_permutation(indices)
        src_masks = outputs["pred_masks"][batch_idx, query_idx].float()  # [N, h, w] or [N, T, h, w]
        target_masks = _pad_to_common_size([t["masks"] for t in targets])
        target_masks = torch.cat([m[j] for m, (_, j) in zip(target_masks, indices)]).to(src_masks)
        if target_masks.shape[:-2] != src_masks.shape[:-2]:
            raise ValueError(
                f"SetCriterion: matched predicted masks {tuple(src_masks.shape)} and target masks "
                f"{tuple(target_masks.shape)} differ in their frame axes (images: [N, H, W]; clips: [N, T, H, W])."
            )
        # one mask per (pair, frame): [N*F, 1, h, w]
        src_masks = src_masks.reshape(-1, 1, *src_masks.shape[-2:])
        target_masks = target_masks.reshape(-1, 1, *target_masks.shape[-2:])
        if src_masks.shape[0] == 0:
            zero = outputs["pred_masks"].sum() * 0.0
            return {"loss_mask": zero, "loss_dice": zero}
        if self.mask_loss == FULL_MASK_FOCAL:
            src = F.interpolate(src_masks, size=target_masks.shape[-2:], mode="bilinear", align_corners=False)
            src, tgt = src.flatten(1), target_masks.flatten(1)
            return {"loss_mask": sigmoid_focal_loss(src, tgt, num_masks), "loss_dice": dice_loss(src, tgt, num_masks)}
        with torch.no_grad():
            coords = get_uncertain_point_coords_with_randomness(
                src_masks, calculate_uncertainty, self.num_points, self.oversample_ratio,
                self.importance_sample_ratio,
            )
            point_labels = point_sample(target_masks, coords).squeeze(1)
        point_logits = point_sample(src_masks, coords).squeeze(1)
        return {
            "loss_mask": sigmoid_ce_loss(point_logits, point_labels, num_masks),
            "loss_dice": dice_loss(point_logits, point_labels, num_masks),
        }

    def _losses_for(self, outputs, targets, indices, num_masks) -> Dict[str, torch.Tensor]:
        out = {}
        if "labels" in self.losses:
            out.update(self.loss_labels(outputs, targets, indices, num_masks))
        if "masks" in self.losses:
            out.update(self.loss_masks(outputs, targets, indices, num_masks))
        return out

    @float32_region  # MODEL.PRECISION bf16: the losses (and the matcher) in float32
    def forward(self, outputs: Dict, targets: Sequence[Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
        """outputs: "pred_logits", "pred_masks", optional "aux_outputs"; targets: per image "labels", "masks".

        Returns the unweighted losses; auxiliary ones are suffixed ``_{i}``.
        """
        main = {k: v for k, v in outputs.items() if k in ("pred_logits", "pred_masks")}
        self._check_labels(main["pred_logits"].shape[-1], targets)
        num_masks = float(sum(len(t["labels"]) for t in targets))
        if dist.is_available() and dist.is_initialized():
            total = torch.as_tensor([num_masks], device=outputs["pred_logits"].device)
            dist.all_reduce(total)
            num_masks = (total / dist.get_world_size()).item()
        num_masks = max(num_masks, 1.0)

        losses = self._losses_for(main, targets, self.matcher(main, targets), num_masks)
        for i, aux in enumerate(outputs.get("aux_outputs", [])):
            aux_losses = self._losses_for(aux, targets, self.matcher(aux, targets), num_masks)
            losses.update({f"{k}_{i}": v for k, v in aux_losses.items()})
        return losses

    def _check_labels(self, num_columns: int, targets: Sequence[Dict[str, torch.Tensor]]) -> None:
        if num_columns > self.empty_weight.numel():
            raise ValueError(
                f"SetCriterion: pred_logits has {num_columns} class columns but the criterion was built for "
                f"num_classes={self.num_classes} (+1 'no object'); check MODEL.SEM_SEG_HEAD.NUM_CLASSES."
            )
        labels = torch.cat([t["labels"].reshape(-1) for t in targets]) if len(targets) else None
        if labels is None or labels.numel() == 0:
            return
        low, top = (int(v) for v in torch.aminmax(labels))
        if low < 0 or top > num_columns - 1:
            raise ValueError(
                f"SetCriterion: target labels span [{low}, {top}] but pred_logits has {num_columns} columns "
                f"(labels must lie in [0, {num_columns - 1}], the last column is 'no object', a target trained as "
                "such, as upstream's video targets can be). With RankSeg's ranked logits, remap the targets first "
                "(rankseg.remap_targets)."
            )


def _pad_to_common_size(masks: List[torch.Tensor]) -> List[torch.Tensor]:
    """Zero-pad per-image masks [N_b, (T,) H_b, W_b] (bottom/right) to the largest H and W of the batch."""
    h = max(m.shape[-2] for m in masks)
    w = max(m.shape[-1] for m in masks)
    if all(m.shape[-2:] == (h, w) for m in masks):
        return masks
    logger.debug("SetCriterion: padding target masks of different sizes to %dx%d.", h, w)
    return [F.pad(m, (0, w - m.shape[-1], 0, h - m.shape[-2])) for m in masks]


def _src_permutation(indices: List[Tuple[torch.Tensor, torch.Tensor]]) -> Tuple[torch.Tensor, torch.Tensor]:
    batch_idx = torch.cat([torch.full_like(src, i) for i, (src, _) in enumerate(indices)])
    query_idx = torch.cat([src for src, _ in indices])
    return batch_idx, query_idx

"""Turning mask classification into semantic, panoptic and instance results (one image at a time).

All functions take the per-query class logits ``mask_cls`` [Q, K+1] (the last column is "no object") and
mask logits ``mask_pred`` [Q, H, W] already resized to the output size, as Mask2Former does.
"""

from __future__ import annotations

from typing import Collection, Dict, List, Optional, Tuple

import torch
from torch.nn import functional as F

from ...structures import Instances

__all__ = ["instance_inference", "panoptic_inference", "semantic_inference"]


def semantic_inference(mask_cls: torch.Tensor, mask_pred: torch.Tensor) -> torch.Tensor:
    """Per-pixel class scores: [K, H, W] = sum_q softmax(mask_cls)[q, :K] * sigmoid(mask_pred)[q].

    ``mask_pred`` may carry more axes after Q (e.g. [Q, T, H, W] for a clip -> [K, T, H, W]).
    """
    probs = F.softmax(mask_cls, dim=-1)[..., :-1]
    return torch.einsum("qc,q...->c...", probs, mask_pred.sigmoid())


def panoptic_inference(
    mask_cls: torch.Tensor,
    mask_pred: torch.Tensor,
    thing_classes: Collection[int],
    object_mask_threshold: float = 0.8,
    overlap_threshold: float = 0.8,
) -> Tuple[torch.Tensor, List[Dict]]:
    """Non-overlapping segments from the confident queries (Mask2Former's panoptic inference).

    Queries whose best class is not "no object" and whose probability exceeds ``object_mask_threshold``
    compete for pixels by probability x mask probability. A query keeps the pixels it wins where its own
    mask is >= 0.5, unless that is less than ``overlap_threshold`` of its mask (then it is dropped). Stuff
    queries of one class merge into one segment.

    Args:
        thing_classes: contiguous ids of the "thing" classes (all others are stuff).
    Returns:
        panoptic_seg [H, W] int32 (0 = void, else a segment id 1..S) and ``segments_info``: one dict per
        segment, ``{"id", "isthing", "category_id"}``.
    """
    num_classes = mask_cls.shape[-1] - 1
    scores, labels = F.softmax(mask_cls, dim=-1).max(-1)
    masks = mask_pred.sigmoid()
    keep = labels.ne(num_classes) & (scores > object_mask_threshold)
    scores, labels, masks = scores[keep], labels[keep], masks[keep]
    height, width = mask_pred.shape[-2:]
    panoptic_seg = torch.zeros((height, width), dtype=torch.int32, device=mask_pred.device)
    segments_info: List[Dict] = []
    if masks.shape[0] == 0:
        return panoptic_seg, segments_info

    winner = (scores.view(-1, 1, 1) * masks).argmax(0)  # [H, W]: the query that wins each pixel
    things = {int(c) for c in thing_classes}
    stuff_segment: Dict[int, int] = {}
    for k, label in enumerate(labels.tolist()):
        own = masks[k] >= 0.5
        won = winner == k
        mask = won & own
        won_area, own_area, area = int(won.sum()), int(own.sum()), int(mask.sum())
        if won_area == 0 or own_area == 0 or area == 0 or won_area / own_area < overlap_threshold:
            continue
        isthing = label in things
        if not isthing and label in stuff_segment:  # one segment per stuff class
            panoptic_seg[mask] = stuff_segment[label]
            continue
        segment_id = len(segments_info) + 1
        if not isthing:
            stuff_segment[label] = segment_id
        panoptic_seg[mask] = segment_id
        segments_info.append({"id": segment_id, "isthing": isthing, "category_id": label})
    return panoptic_seg, segments_info


def instance_inference(
    mask_cls: torch.Tensor,
    mask_pred: torch.Tensor,
    topk: int = 100,
    thing_classes: Optional[Collection[int]] = None,
) -> Instances:
    """The ``topk`` best (query, class) pairs as instances (Mask2Former's instance inference).

    Args:
        topk: instances per image (``TEST.DETECTIONS_PER_IMAGE``); at most Q x K.
        thing_classes: when given (panoptic models), only instances of these classes are kept.
    Returns:
        :class:`Instances` of size (H, W) with ``pred_masks`` [N, H, W] float {0, 1}, ``scores`` [N] (class
        probability x mean mask probability inside the mask), ``pred_classes`` [N] int64 and ``pred_boxes``
        [N, 4] zeros (boxes are not predicted; upstream leaves them zero too).
    """
    num_classes = mask_cls.shape[-1] - 1
    probs = F.softmax(mask_cls, dim=-1)[:, :-1]  # [Q, K]
    scores, flat_index = probs.flatten().topk(min(topk, probs.numel()), sorted=False)
    classes = flat_index % num_classes
    masks = mask_pred[flat_index // num_classes]
    if thing_classes is not None:
        is_thing = torch.zeros(num_classes + 1, dtype=torch.bool, device=classes.device)
        is_thing[torch.as_tensor(sorted(int(c) for c in thing_classes), dtype=torch.long, device=classes.device)] = True
        keep = is_thing[classes]
        scores, classes, masks = scores[keep], classes[keep], masks[keep]
    binary = (masks > 0).float()
    mask_scores = (masks.sigmoid().flatten(1) * binary.flatten(1)).sum(1) / (binary.flatten(1).sum(1) + 1e-6)
    return Instances(
        tuple(mask_pred.shape[-2:]),
        pred_masks=binary,
        pred_boxes=binary.new_zeros((binary.shape[0], 4)),
        scores=scores * mask_scores,
        pred_classes=classes,
    )

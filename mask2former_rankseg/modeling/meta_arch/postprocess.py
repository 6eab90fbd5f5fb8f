"""Turning mask classification into semantic, panoptic and instance results (one image at a time).

All functions take the per-query class logits ``mask_cls`` [Q, K+1] (the last column is "no object") and
mask logits ``mask_pred`` [Q, H, W] already resized to the output size, as Mask2Former does.
"""

from __future__ import annotations

from typing import Callable, Collection, Dict, List, Optional, Tuple

import torch
from torch.nn import functional as F

from ...structures import Instances
from .grouped_scores import GroupedScores, order_groups

__all__ = [
    "class_groups",
    "instance_inference",
    "panoptic_inference",
    "semantic_grouped_scores",
    "semantic_inference",
    "semantic_labels",
    "upsample_cropped",
]

SEMANTIC_LABELS_CHUNK_ELEMENTS = 2**24
"""Default work size of :func:`semantic_labels`: as many class maps at a time as fit in this many scores
(64 MiB of float32; 64 maps of 512 x 512)."""


def semantic_inference(mask_cls: torch.Tensor, mask_pred: torch.Tensor) -> torch.Tensor:
    """Per-pixel class scores: [K, H, W] = sum_q softmax(mask_cls)[q, :K] * sigmoid(mask_pred)[q].

    ``mask_pred`` may carry more axes after Q (e.g. [Q, T, H, W] for a clip -> [K, T, H, W]). Classes with
    identical probability columns (with RankSeg: every class outside the top-k) get one map computed once and
    copied (:func:`class_groups`): the same sums, G x Q instead of K x Q products per pixel. Under
    ``torch.compile`` / ``torch.export`` every class gets its own map (the same result; no data-dependent shape).
    """
    probs = F.softmax(mask_cls, dim=-1)[..., :-1]
    masks = mask_pred.sigmoid()
    if torch.compiler.is_compiling():  # the grouping's size depends on the values: one map per class when traced
        return torch.einsum("qc,q...->c...", probs, masks)
    group_probs, class_group, _ = class_groups(probs)
    if group_probs.shape[0] == probs.shape[-1]:  # every class has its own map
        return torch.einsum("qc,q...->c...", probs, masks)
    return torch.einsum("gq,q...->g...", group_probs, masks)[class_group]


def upsample_cropped(masks: torch.Tensor, padded_size: Tuple[int, int], image_size: Tuple[int, int]) -> torch.Tensor:
    """``F.interpolate(masks, padded_size, mode="bilinear")[..., :h, :w]`` computing only the rows and columns the
    crop keeps (and at most a few more).

    When the padded size is an integer multiple ``s`` of the mask size along an axis (Mask2Former's masks are at
    1/4 of the padded input), output pixel ``i`` reads mask pixels ``floor((i + 0.5) / s - 0.5)`` and the next one
    with weights that depend on ``i`` only, so the first ``h // s + 2`` mask rows upsampled with the same scale
    give the same first ``h`` rows. Other ratios upsample to the padded size and crop.

    Args:
        masks: [..., h_low, w_low] (at least 3 axes; a leading [Q] is treated as channels).
        padded_size: (Hpad, Wpad) of the network input. image_size: (h, w) of the image inside the padding.
    Returns:
        [..., h, w].
    """
    low = tuple(masks.shape[-2:])
    padded = (int(padded_size[0]), int(padded_size[1]))
    crop = (int(image_size[0]), int(image_size[1]))
    lead = masks.shape[:-2]
    x = masks.reshape(1, -1, *low)
    if all(p % n == 0 for p, n in zip(padded, low)):
        scale = [p // n for p, n in zip(padded, low)]
        keep = [min(n, c // s + 2) for n, c, s in zip(low, crop, scale)]
        x = F.interpolate(x[..., : keep[0], : keep[1]], scale_factor=(float(scale[0]), float(scale[1])),
                          mode="bilinear", align_corners=False, recompute_scale_factor=False)
    else:
        x = F.interpolate(x, size=padded, mode="bilinear", align_corners=False)
    return x[0, :, : crop[0], : crop[1]].reshape(*lead, *crop)


def class_groups(probs: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Group the classes whose per-query probabilities are identical (their score maps are then identical).

    With RankSeg every class outside the top-k has the same suppressed logit, so K classes form k + 1 groups.

    Args:
        probs: [Q, K] class probabilities of the queries.
    Returns:
        ``group_probs`` [G, Q] (one probability column per group), ``class_group`` [K] (group of each class)
        and ``first_class`` [G] (smallest class of each group); groups are ordered by ``first_class``.
    """
    unique, inverse = torch.unique(probs.t(), dim=0, return_inverse=True)  # [G, Q], [K]
    order, class_group, first_class = order_groups(inverse, unique.shape[0])
    return unique[order], class_group, first_class


def semantic_grouped_scores(
    mask_cls: torch.Tensor,
    mask_pred: torch.Tensor,
    resize: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
) -> GroupedScores:
    """:func:`semantic_inference` (then ``resize``) as :class:`GroupedScores`: one [H, W] map per group of classes
    with identical probabilities (k + 1 maps with RankSeg, K without). Same arguments as :func:`semantic_labels`."""
    group_probs, class_group, _ = class_groups(F.softmax(mask_cls, dim=-1)[..., :-1])
    maps = torch.einsum("gq,qhw->ghw", group_probs, mask_pred.sigmoid())
    return GroupedScores(maps if resize is None else resize(maps), class_group)


def semantic_labels(
    mask_cls: torch.Tensor,
    mask_pred: torch.Tensor,
    resize: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    chunk_size: Optional[int] = None,
) -> torch.Tensor:
    """``semantic_inference(mask_cls, mask_pred)`` (then ``resize``) followed by ``argmax`` over classes, without
    the [K, H, W] score tensor.

    Classes with identical probability columns share one score map (:func:`class_groups`); the maps of
    ``chunk_size`` groups at a time are computed, resized and folded into a running maximum. Ties go to the
    smallest class, as ``argmax`` does. Extra memory: [chunk_size, H, W] floats plus the [H, W] maximum and
    labels, instead of [K, H, W]. Larger chunks run faster (fewer, larger matrix products).

    Args:
        mask_cls: [Q, K+1] class logits ("no object" last).
        mask_pred: [Q, h, w] mask logits.
        resize: maps [C, h, w] scores to [C, H, W] (e.g. cropping the padding and resizing to the original
            image, as ``sem_seg_postprocess``); must treat each channel independently. None: H, W = h, w.
        chunk_size: maps per step; default: ``SEMANTIC_LABELS_CHUNK_ELEMENTS // (h * w)`` (at least 1).
    Returns:
        [H, W] int64 labels in [0, K).
    """
    if chunk_size is None:
        chunk_size = max(1, SEMANTIC_LABELS_CHUNK_ELEMENTS // max(1, mask_pred.shape[-2] * mask_pred.shape[-1]))
    if chunk_size <= 0:
        raise ValueError(f"semantic_labels: chunk_size must be positive, got {chunk_size}.")
    group_probs, _, first_class = class_groups(F.softmax(mask_cls, dim=-1)[..., :-1])
    masks = mask_pred.sigmoid()
    best = labels = None
    for start in range(0, group_probs.shape[0], chunk_size):
        scores = torch.einsum("gq,qhw->ghw", group_probs[start:start + chunk_size], masks)
        if resize is not None:
            scores = resize(scores)
        value, index = scores.max(dim=0)
        chunk_labels = first_class[start + index]
        if best is None:
            best, labels = value, chunk_labels
        else:
            better = value > best
            best = torch.where(better, value, best)
            labels = torch.where(better, chunk_labels, labels)
    return labels


def panoptic_inference(
    mask_cls: torch.Tensor,
    mask_pred: torch.Tensor,
    thing_classes: Collection[int],
    object_mask_threshold: float = 0.8,
    overlap_threshold: float = 0.8,
    within_own_mask: bool = True,
) -> Tuple[torch.Tensor, List[Dict]]:
    """Non-overlapping segments from the confident queries (Mask2Former's and MaskFormer's panoptic inference).

    Queries whose best class is not "no object" and whose probability exceeds ``object_mask_threshold``
    compete for pixels by probability x mask probability. A query keeps the pixels it wins (with
    ``within_own_mask``, Mask2Former: only where its own mask is >= 0.5), unless it wins less than
    ``overlap_threshold`` of its own mask (then it is dropped). Stuff queries of one class merge into one segment.

    Args:
        thing_classes: contiguous ids of the "thing" classes (all others are stuff).
        within_own_mask: True as Mask2Former; False as MaskFormer (a segment is every pixel its query wins).
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
        mask = won & own if within_own_mask else won
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

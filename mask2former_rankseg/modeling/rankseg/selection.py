"""RankSeg's narrow interface: check TOPK, select the top-k categories, gather/scatter logits, remap targets.

Pure functions on tensors, shared by every segmenter that uses RankSeg.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch

from ...config import ConfigError
from ...constants import SUPPRESSED_LOGIT


def check_topk(topk: int, num_classes: int) -> None:
    """RankSeg's TOPK check, for every entry point (config, constructor arguments, tensors).

    Raises:
        ConfigError: unless 1 <= ``topk`` <= ``num_classes``.
    """
    if not 0 < topk <= num_classes:
        raise ConfigError(
            f"MODEL.RANKSEG.TOPK={topk} must lie in [1, MODEL.SEM_SEG_HEAD.NUM_CLASSES={num_classes}]: the number "
            f"of categories RankSeg keeps per image (or clip); set 1 <= TOPK <= {num_classes}."
        )


def select_topk(image_logits: torch.Tensor, topk: int, *, no_object: bool = True,
                present: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Indices of the ``topk`` best-scored categories, best first (plus the "no object" index).

    Args:
        image_logits: [B, K] multi-label scores.
        topk: categories to keep (1 <= topk <= K, :func:`check_topk`).
        no_object: append column K, "no object" (mask classification); per-pixel classifiers have none.
        present: [B, K] bool, the ground-truth oracle's ranking: the categories present in the image come first
            (by score), then the others.
    Returns:
        [B, topk + 1] long whose column ``topk`` is K with ``no_object``, else [B, topk]. Ties are broken by the
        lower index (stable sort).
    """
    num_classes = image_logits.shape[1]
    check_topk(topk, num_classes)
    order = torch.sort(image_logits.detach(), dim=1, descending=True, stable=True).indices
    if present is not None:  # a stable sort on presence keeps the score order within each group
        first = torch.gather(present, 1, order).to(torch.int8)
        order = torch.gather(order, 1, torch.sort(first, dim=1, descending=True, stable=True).indices)
    order = order[:, :topk]
    if not no_object:
        return order
    return torch.cat((order, order.new_full((order.shape[0], 1), num_classes)), dim=1)


def gather_ranked(class_logits: torch.Tensor, topk_index: torch.Tensor) -> torch.Tensor:
    """Class logits at the selected categories, in rank order.

    Args:
        class_logits: [B, Q, K+1]. topk_index: [B, k+1].
    Returns:
        [B, Q, k+1].
    """
    index = topk_index.unsqueeze(1).expand(-1, class_logits.shape[1], -1)
    return torch.gather(class_logits, 2, index)


def scatter_back(ranked: torch.Tensor, topk_index: torch.Tensor, num_classes: int,
                 fill: float = SUPPRESSED_LOGIT) -> torch.Tensor:
    """Put rank-ordered logits back into the full class space; unselected categories get ``fill``.

    Args:
        ranked: [B, Q, k+1]. topk_index: [B, k+1]. num_classes: K.
    Returns:
        [B, Q, K+1].
    """
    b, q, _ = ranked.shape
    full = ranked.new_full((b, q, num_classes + 1), fill)
    return full.scatter(2, topk_index.unsqueeze(1).expand(-1, q, -1), ranked)


def remap_targets(targets: Sequence[Dict[str, torch.Tensor]], topk_index: torch.Tensor,
                  num_classes: int) -> List[Dict[str, torch.Tensor]]:
    """Express target labels as rank positions; drop segments whose category was not selected.

    Args:
        targets: per image {"labels": [N] long in [0, K] (K: a segment trained as "no object"), "masks": [N, H, W],
            ...}.
        topk_index: [B, k+1] selection (last column "no object").
        num_classes: K.
    Returns:
        new dicts with "labels" in [0, k] and the matching "masks" rows; other keys unchanged (the inputs
        are not modified). Example: K=5, selection [3, 1, 5]: labels [1, 3, 4, 5] -> [1, 0, 2] (class 4 dropped,
        "no object" at rank position k).
    """
    b, width = topk_index.shape
    if len(targets) != b:
        raise ValueError(f"remap_targets: {len(targets)} targets but topk_index has {b} rows.")
    labels = torch.cat([t["labels"].reshape(-1) for t in targets]) if b else topk_index.new_zeros(0)
    if labels.numel() and not torch.compiler.is_compiling():  # reads values: eager only
        low, top = (int(v) for v in torch.aminmax(labels))
        if low < 0 or top > num_classes:
            raise ValueError(
                f"remap_targets: target labels span [{low}, {top}], outside [0, {num_classes}] "
                f"(num_classes={num_classes}); check MODEL.SEM_SEG_HEAD.NUM_CLASSES and the dataset's labels."
            )
    inverse = topk_index.new_full((b, num_classes + 1), -1)
    inverse.scatter_(1, topk_index, torch.arange(width, device=topk_index.device).expand(b, -1))
    out = []
    for i, target in enumerate(targets):
        ranks = inverse[i][target["labels"]]
        keep = ranks >= 0
        new = dict(target)
        new["labels"] = ranks[keep]
        new["masks"] = target["masks"][keep]
        out.append(new)
    return out


def present_classes(gt_classes: Sequence[torch.Tensor], num_classes: int) -> torch.Tensor:
    """[B, K] bool: which categories occur in each image's ground truth (labels >= K are ignored)."""
    device = gt_classes[0].device if len(gt_classes) else None
    present = torch.zeros((len(gt_classes), num_classes), dtype=torch.bool, device=device)
    categories = torch.arange(num_classes, device=device)
    for i, labels in enumerate(gt_classes):
        # a comparison, not a boolean index: no data-dependent shape (torch.compile keeps one graph)
        present[i] = (labels.reshape(-1, 1) == categories).any(0)
    return present


def suppress_absent(class_logits: torch.Tensor, present: torch.Tensor,
                    fill: float = SUPPRESSED_LOGIT) -> torch.Tensor:
    """The ground-truth oracle: set logits of categories absent from the image to ``fill``.

    Args:
        class_logits: [B, Q, K+1]. present: [B, K] bool.
    Returns:
        new [B, Q, K+1]; the "no object" column is untouched.
    """
    absent = torch.cat((~present, present.new_zeros((present.shape[0], 1))), dim=1)
    return class_logits.masked_fill(absent.unsqueeze(1), fill)


# --------------------------------------------------------------------------------------------------
# Per-pixel classifiers: [B, k, H, W] maps over the selected categories, in rank order
# --------------------------------------------------------------------------------------------------


def scatter_back_maps(ranked: torch.Tensor, topk_index: torch.Tensor, num_classes: int,
                      fill: float = SUPPRESSED_LOGIT) -> torch.Tensor:
    """Put rank-ordered pixel logits back into the full class space; unselected categories get ``fill``.

    Args:
        ranked: [B, k, H, W]. topk_index: [B, k] (no "no object" column). num_classes: K.
    Returns:
        [B, K, H, W]; channel ``topk_index[b, r]`` holds ``ranked[b, r]``.
    """
    b, k, h, w = ranked.shape
    full = ranked.new_full((b, num_classes, h, w), fill)
    return full.scatter(1, topk_index.view(b, k, 1, 1).expand(-1, -1, h, w), ranked)


def remap_pixel_labels(labels: torch.Tensor, topk_index: torch.Tensor, num_classes: int,
                       ignore_label: int) -> torch.Tensor:
    """Pixel labels as rank positions: a pixel of category ``topk_index[b, r]`` gets ``r``; pixels of unselected
    categories, and ``ignore_label`` pixels, get ``ignore_label``.

    Args:
        labels: [B, H, W] long, categories in [0, K) or ``ignore_label``.
        topk_index: [B, k] selection (no "no object" column). num_classes: K.
    Returns:
        new [B, H, W] long. Example: K=5, selection [3, 1]: labels [1, 3, 4, 255] -> [1, 0, 255, 255].
    """
    b, k = topk_index.shape
    valid = labels != ignore_label
    if valid.any():
        low, top = (int(v) for v in torch.aminmax(labels[valid]))
        if low < 0 or top >= num_classes:
            raise ValueError(
                f"remap_pixel_labels: labels span [{low}, {top}] (ignore {ignore_label} aside), outside "
                f"[0, {num_classes - 1}]; check MODEL.SEM_SEG_HEAD.NUM_CLASSES and IGNORE_VALUE against the dataset."
            )
    inverse = topk_index.new_full((b, num_classes + 1), ignore_label)  # column K: where the ignore pixels look
    inverse.scatter_(1, topk_index, torch.arange(k, device=topk_index.device).expand(b, -1))
    lookup = torch.where(valid, labels, torch.full_like(labels, num_classes))
    return torch.gather(inverse, 1, lookup.reshape(b, -1)).view_as(labels)


def present_in_label_maps(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[B, K] bool: the categories with at least one pixel in each label map [B, H, W] (other values, e.g. the
    ignore label, do not count)."""
    b = labels.shape[0]
    flat = labels.reshape(b, -1)
    inside = (flat >= 0) & (flat < num_classes)
    counts = torch.zeros((b, num_classes + 1), dtype=torch.long, device=labels.device)
    counts.scatter_add_(1, torch.where(inside, flat, torch.full_like(flat, num_classes)), inside.long())
    return counts[:, :num_classes] > 0


def suppress_absent_maps(logits: torch.Tensor, present: torch.Tensor, fill: float = SUPPRESSED_LOGIT) -> torch.Tensor:
    """The ground-truth oracle on pixel logits: categories absent from the image get ``fill``.

    Args:
        logits: [B, K, H, W]. present: [B, K] bool.
    Returns:
        new [B, K, H, W].
    """
    return logits.masked_fill(~present[:, :, None, None], fill)

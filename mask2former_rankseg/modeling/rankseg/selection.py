"""RankSeg's narrow interface: check TOPK, select the top-k categories, gather/scatter logits, remap targets.

Pure functions on tensors, shared by every segmenter that uses RankSeg.
"""

from __future__ import annotations

from typing import Dict, List, Sequence

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


def select_topk(image_logits: torch.Tensor, topk: int) -> torch.Tensor:
    """Indices of the ``topk`` best-scored categories, best first, plus the "no object" index.

    Args:
        image_logits: [B, K] multi-label scores.
        topk: categories to keep (1 <= topk <= K, :func:`check_topk`).
    Returns:
        [B, topk + 1] long; column ``topk`` is K ("no object"). Ties are broken by the lower index
        (stable sort).
    """
    num_classes = image_logits.shape[1]
    check_topk(topk, num_classes)
    order = torch.sort(image_logits.detach(), dim=1, descending=True, stable=True).indices[:, :topk]
    no_object = order.new_full((order.shape[0], 1), num_classes)
    return torch.cat((order, no_object), dim=1)


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
        targets: per image {"labels": [N] long, "masks": [N, H, W], ...}.
        topk_index: [B, k+1] selection (last column "no object").
        num_classes: K.
    Returns:
        new dicts with "labels" in [0, k) and the matching "masks" rows; other keys unchanged (the inputs
        are not modified). Example: K=5, selection [3, 1, 5]: labels [1, 3, 4] -> [1, 0] (class 4 dropped).
    """
    b, width = topk_index.shape
    if len(targets) != b:
        raise ValueError(f"remap_targets: {len(targets)} targets but topk_index has {b} rows.")
    labels = torch.cat([t["labels"].reshape(-1) for t in targets]) if b else topk_index.new_zeros(0)
    if labels.numel():
        low, top = (int(v) for v in torch.aminmax(labels))
        if low < 0 or top >= num_classes:
            raise ValueError(
                f"remap_targets: target labels span [{low}, {top}], outside [0, {num_classes - 1}] "
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
    for i, labels in enumerate(gt_classes):
        labels = labels[(labels >= 0) & (labels < num_classes)]
        present[i, labels] = True
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

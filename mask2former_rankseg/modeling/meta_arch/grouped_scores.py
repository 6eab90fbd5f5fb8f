"""Per-class semantic scores stored once per group of classes that share one score map.

Mask classification gives class ``c`` the map ``sum_q p[q, c] * sigmoid(mask[q])``, so classes with the same
probability column ``p[:, c]`` have the same map. With RankSeg every class outside the top-k has the same
suppressed logit: K classes need only k + 1 maps. Sums of such scores (test-time augmentation) stay grouped:
a class's group in the sum is the pair of its groups in the terms.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import torch

__all__ = ["GroupedScores", "order_groups"]


def order_groups(class_group: torch.Tensor, num_groups: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Renumber groups by their smallest class.

    Args:
        class_group: [K] int64 group of each class, values in [0, num_groups), every group used.
    Returns:
        ``order`` [G] (old group of each new group), ``class_group`` [K] renumbered, ``first_class`` [G]
        (smallest class of each new group, increasing).
    """
    num_classes = class_group.numel()
    first = torch.full((num_groups,), num_classes, dtype=torch.long, device=class_group.device)
    first = first.scatter_reduce(0, class_group, torch.arange(num_classes, device=class_group.device), reduce="amin")
    if bool((first == num_classes).any()):
        raise ValueError("Every group must hold at least one class.")
    order = first.argsort()
    rank = torch.empty_like(order)
    rank[order] = torch.arange(num_groups, device=order.device)
    return order, rank[class_group], first[order]


class GroupedScores:
    """Scores of K classes as ``maps`` [G, H, W] and ``class_group`` [K] (the score map of class ``c`` is
    ``maps[class_group[c]]``), groups ordered by their smallest class (``first_class`` [G]).

    ``labels()`` equals ``dense().argmax(0)`` (ties to the smallest class) without making the [K, H, W] tensor.
    """

    def __init__(self, maps: torch.Tensor, class_group: torch.Tensor):
        if maps.dim() != 3 or class_group.dim() != 1:
            raise ValueError(f"GroupedScores needs maps [G, H, W] and class_group [K], got {tuple(maps.shape)} and "
                             f"{tuple(class_group.shape)}.")
        order, self.class_group, self.first_class = order_groups(class_group.long(), maps.shape[0])
        self.maps = maps if _is_identity(order) else maps[order]

    @classmethod
    def from_dense(cls, scores: torch.Tensor) -> GroupedScores:
        """One group per class of [K, H, W] ``scores``."""
        return cls(scores, torch.arange(scores.shape[0], device=scores.device))

    @property
    def num_classes(self) -> int:
        return self.class_group.numel()

    def dense(self) -> torch.Tensor:
        """[K, H, W] scores (the maps themselves when every class has its own)."""
        return self.maps if _is_identity(self.class_group, self.maps.shape[0]) else self.maps[self.class_group]

    def labels(self) -> torch.Tensor:
        """[H, W] int64 class of the highest score (the smallest such class on ties)."""
        return self.first_class[self.maps.argmax(dim=0)]

    def flip(self, dims: Sequence[int]) -> GroupedScores:
        return GroupedScores(self.maps.flip(dims), self.class_group)

    def scale(self, factor: float) -> GroupedScores:
        return GroupedScores(self.maps * factor, self.class_group)

    def scale_(self, factor: float) -> GroupedScores:
        """:meth:`scale` in place."""
        self.maps.mul_(factor)
        return self

    def __add__(self, other: GroupedScores) -> GroupedScores:
        """Class-wise sum; its groups are the distinct (group here, group in ``other``) pairs."""
        return self._add(other, in_place=False)

    def add_(self, other: GroupedScores) -> GroupedScores:
        """``self + other``, reusing this object's maps as the result's when the grouping does not change
        (e.g. one group per class, as without RankSeg): no third [G, H, W] buffer."""
        return self._add(other, in_place=True)

    def _add(self, other: GroupedScores, in_place: bool) -> GroupedScores:
        if other.num_classes != self.num_classes or other.maps.shape[1:] != self.maps.shape[1:]:
            raise ValueError(f"Cannot add scores of {other.num_classes} classes {tuple(other.maps.shape[1:])} to "
                             f"{self.num_classes} classes {tuple(self.maps.shape[1:])}.")
        width = other.maps.shape[0]
        pairs, class_group = torch.unique(self.class_group * width + other.class_group, return_inverse=True)
        mine, theirs = pairs // width, pairs % width
        addend = other.maps if _is_identity(theirs, width) else other.maps[theirs]
        if _is_identity(mine, self.maps.shape[0]):
            maps = self.maps.add_(addend) if in_place else self.maps + addend
        else:
            maps = self.maps[mine] + addend
        return GroupedScores(maps, class_group)


def _is_identity(index: torch.Tensor, length: int = -1) -> bool:
    """Whether ``index`` is ``0, 1, ..., n - 1`` (and ``n == length`` when given)."""
    n = index.numel()
    return (length < 0 or n == length) and bool(torch.equal(index, torch.arange(n, device=index.device)))

"""Stable instance identities across the frames of a video, for models that see one frame at a time: the
visualizer colours an instance by its identity, so a tracked object keeps its colour."""

from __future__ import annotations

from typing import List, Optional, Sequence, Set

import numpy as np

__all__ = ["InstanceTracker"]


class InstanceTracker:
    """Stable identities for the instances of consecutive video frames (so their colours stay the same).

    Each instance takes the identity of the previous frame's instance of the same class with which it has
    the largest mask IoU (>= ``iou_threshold``, greedily, each identity used once); the others get new ones.

    Args:
        iou_threshold: the smallest IoU that continues a track.
        max_side: masks are compared at (about) this resolution on their longer side, for speed.
    """

    def __init__(self, iou_threshold: float = 0.5, max_side: int = 128):
        self.iou_threshold = iou_threshold
        self.max_side = max_side
        self._masks = np.zeros((0, 0), dtype=np.float32)
        self._classes: List[int] = []
        self._ids: List[int] = []
        self._next_id = 0

    def assign(self, masks: np.ndarray, classes: Sequence[int]) -> List[int]:
        """Identities of this frame's instances: ``masks`` [N, H, W] bool, ``classes`` [N]."""
        masks = np.asarray(masks, dtype=bool)
        step = max(1, int(np.ceil(max(masks.shape[-2:], default=1) / self.max_side)))
        flat = masks[:, ::step, ::step].reshape(len(masks), -1).astype(np.float32)
        classes = [int(c) for c in classes]
        ids: List[Optional[int]] = [None] * len(classes)
        if len(self._ids) and len(classes) and flat.shape[1] == self._masks.shape[1]:
            inter = flat @ self._masks.T
            union = flat.sum(1, keepdims=True) + self._masks.sum(1)[None] - inter
            iou = np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)
            same_class = np.asarray(classes)[:, None] == np.asarray(self._classes)[None]
            iou = np.where(same_class, iou, -1.0)
            taken: Set[int] = set()
            for flat_index in np.argsort(-iou, axis=None, kind="stable"):
                i, j = divmod(int(flat_index), iou.shape[1])
                if iou[i, j] < self.iou_threshold:
                    break
                if ids[i] is None and j not in taken:
                    ids[i] = self._ids[j]
                    taken.add(j)
        for i, identity in enumerate(ids):
            if identity is None:
                ids[i] = self._next_id
                self._next_id += 1
        self._masks, self._classes, self._ids = flat, classes, [int(i) for i in ids]
        return list(self._ids)

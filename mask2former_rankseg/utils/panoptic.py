"""COCO panoptic PNG encoding: segment ids <-> RGB (panopticapi's ``id = R + 256 G + 256^2 B``, 0 = void)."""

from __future__ import annotations

import numpy as np

__all__ = ["VOID_SEGMENT", "id2rgb", "rgb2id"]

VOID_SEGMENT = 0
"""Segment id of unannotated pixels."""


def id2rgb(ids: np.ndarray) -> np.ndarray:
    """Segment ids [H, W] -> RGB [H, W, 3] uint8 (panopticapi's encoding)."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.min(initial=0) < 0 or ids.max(initial=0) >= 256 ** 3:
        raise ValueError(f"Panoptic segment ids must lie in [0, 256^3), got [{ids.min()}, {ids.max()}].")
    return np.stack([ids % 256, ids // 256 % 256, ids // 256 ** 2], axis=-1).astype(np.uint8)


def rgb2id(rgb: np.ndarray) -> np.ndarray:
    """RGB [H, W, 3] -> segment ids [H, W] int64 (inverse of :func:`id2rgb`)."""
    rgb = np.asarray(rgb, dtype=np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 ** 2 * rgb[..., 2]

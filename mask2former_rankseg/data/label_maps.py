"""Label-map helpers for the ``datasets/prepare_*.py`` scripts: remapping through a lookup table and atomic
writing of 8- or 16-bit maps (PNG or TIFF)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..utils.file_io import atomic_write

__all__ = ["remap_labels", "save_label_map"]

_DTYPES = (np.uint8, np.uint16)


def remap_labels(raw: np.ndarray, lut: np.ndarray, dtype: type, source: str = "label map") -> np.ndarray:
    """``lut[raw]`` as ``dtype``; ``lut`` entries < 0 mark values that must not occur.

    Args:
        raw: [H, W] non-negative integer labels.
        lut: [N] int64 lookup; raw values >= N are invalid too.
        dtype: ``np.uint8`` or ``np.uint16``, the output type.
        source: names the map in errors.
    Raises:
        ValueError: naming ``source`` and the first few invalid values.
    """
    raw = np.asarray(raw)
    if raw.ndim != 2:
        raise ValueError(f"{source} has shape {raw.shape}; expected a single-channel [H, W] label map.")
    too_large = raw >= len(lut)
    if too_large.any() or (raw < 0).any():
        values = np.unique(raw[too_large | (raw < 0)])[:5].tolist()
        raise ValueError(f"{source} holds values {values} outside the known range [0, {len(lut)}).")
    out = lut[raw]
    if (out < 0).any():
        values = np.unique(raw[out < 0])[:5].tolist()
        raise ValueError(f"{source} holds values {values} that are no known category.")
    return out.astype(dtype)


def save_label_map(labels: np.ndarray, path: str | Path) -> None:
    """Write [H, W] ``uint8`` or ``uint16`` labels to ``path`` (PNG or TIFF, by suffix) atomically
    (:func:`~mask2former_rankseg.utils.file_io.atomic_write`), so an interrupted run leaves no truncated file."""
    path = Path(path)
    if labels.ndim != 2 or labels.dtype not in _DTYPES:
        raise TypeError(f"{path}: label maps are [H, W] uint8 or uint16, got {labels.dtype} {labels.shape}.")
    fmt = {".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF"}.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: label maps are written as .png or .tif, not {path.suffix!r}.")
    atomic_write(path, lambda f: Image.fromarray(np.ascontiguousarray(labels)).save(f, format=fmt))

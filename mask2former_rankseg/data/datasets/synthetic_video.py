"""Synthetic video datasets: ``synthetic_ytvis_{train,val}`` (YouTube-VIS format, video instances) and
``synthetic_vspw_{train,val}`` (VSPW layout, video semantic), category table and registration.

The data live in ``$DETECTRON2_DATASETS/synthetic/ytvis/`` and ``$DETECTRON2_DATASETS/synthetic/vspw/`` (see
``mask2former_rankseg/data/synthetic_video.py``) and are generated there on the first ``DatasetCatalog.get``
when missing. Both use the same 48 categories: 4 shapes x 12 colours, solid.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Tuple

from ..catalog import DatasetCatalog
from .sem_seg import dataset_root
from .synthetic_sem_seg import COLORS, SyntheticCategory, ensure_synthetic_dataset
from .vspw import register_vspw
from .ytvis import register_ytvis_instances

__all__ = [
    "VIDEO_SHAPES",
    "register_all_synthetic_video",
    "synthetic_vspw_dir",
    "synthetic_ytvis_dir",
    "video_categories",
    "ytvis_categories",
]

logger = logging.getLogger(__name__)

VIDEO_SHAPES: Tuple[str, ...] = ("disc", "square", "triangle", "cross")


def video_categories() -> List[SyntheticCategory]:
    """The 48 video categories "<colour>-<shape>" (ids 0..47, ordered by shape, then colour)."""
    return [SyntheticCategory(i * len(COLORS) + j, f"{color_name}-{shape}", color_name, "solid", shape, color)
            for i, shape in enumerate(VIDEO_SHAPES) for j, (color_name, color) in enumerate(COLORS.items())]


def ytvis_categories() -> Tuple[Tuple[int, str, Tuple[int, int, int]], ...]:
    """(dataset id 1..48, name, colour) of the video categories, as the YouTube-VIS registration takes them."""
    return tuple((c.id + 1, c.name, c.color) for c in video_categories())


def synthetic_ytvis_dir() -> Path:
    """``$DETECTRON2_DATASETS/synthetic/ytvis`` (read at call time)."""
    return dataset_root() / "synthetic" / "ytvis"


def synthetic_vspw_dir() -> Path:
    """``$DETECTRON2_DATASETS/synthetic/vspw``: a ``VSPW_480p``-layout folder (read at call time)."""
    return dataset_root() / "synthetic" / "vspw"


def _ytvis_paths(split: str, generate: bool = True) -> Tuple[Path, Path]:
    root = synthetic_ytvis_dir()
    if generate:
        from ..synthetic_video import generate_ytvis_dataset

        ensure_synthetic_dataset(root, "video", "YouTube-VIS", generate_ytvis_dataset)
    folder = {"train": "train", "val": "valid"}[split]
    return root / folder / "JPEGImages", root / f"{folder}.json"


def _vspw_paths(split: str, generate: bool = True) -> Tuple[Path, Path]:
    root = synthetic_vspw_dir()
    if generate:
        from ..synthetic_video import generate_vspw_dataset

        ensure_synthetic_dataset(root, "vspw", "VSPW", generate_vspw_dataset)
    return root, root / f"{split}.txt"


def register_all_synthetic_video() -> None:
    """Register ``synthetic_ytvis_{train,val}`` and ``synthetic_vspw_{train,val}`` (cheap: nothing is read)."""
    from .vspw import VSPW_EVAL_CLIP_LENGTH

    classes = tuple(c.name for c in video_categories())
    colors = [list(c.color) for c in video_categories()]
    for split in ("train", "val"):
        name = f"synthetic_ytvis_{split}"
        if name not in DatasetCatalog:
            register_ytvis_instances(name, ytvis_categories(), lambda split=split: _ytvis_paths(split),
                                     initial_paths=_ytvis_paths(split, generate=False))
        name = f"synthetic_vspw_{split}"
        if name not in DatasetCatalog:
            register_vspw(name, lambda split=split: _vspw_paths(split),
                          clip_length=VSPW_EVAL_CLIP_LENGTH if split == "val" else None, classes=classes,
                          initial_paths=_vspw_paths(split, generate=False), stuff_colors=colors)

"""Synthetic semantic segmentation (``synthetic_sem_seg_{train,val}``): category table and loaders.

The data live in ``$DETECTRON2_DATASETS/synthetic/sem_seg/`` (ADE20K layout, see
``mask2former_rankseg/data/synthetic.py``) and are generated there on the first
``DatasetCatalog.get`` when missing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

from ...constants import IGNORE_LABEL
from ..catalog import DatasetCatalog, MetadataCatalog
from .sem_seg import dataset_root, load_sem_seg, set_metadata_roots

__all__ = [
    "SHAPES",
    "COLORS",
    "TEXTURES",
    "SyntheticCategory",
    "semantic_categories",
    "ensure_synthetic_dataset",
    "synthetic_sem_seg_dir",
    "load_synthetic_sem_seg",
    "register_all_synthetic_sem_seg",
]

logger = logging.getLogger(__name__)

SHAPES: Tuple[str, ...] = ("disc", "ring", "cross")
COLORS: Dict[str, Tuple[int, int, int]] = {
    "red": (225, 30, 30),
    "orange": (245, 130, 20),
    "yellow": (240, 230, 40),
    "lime": (150, 230, 40),
    "green": (20, 150, 40),
    "teal": (20, 140, 130),
    "cyan": (60, 230, 240),
    "blue": (30, 60, 230),
    "purple": (120, 40, 190),
    "magenta": (230, 50, 210),
    "white": (250, 250, 250),
    "black": (20, 20, 20),
}
TEXTURES: Tuple[str, ...] = ("solid", "hstriped", "checkered")


@dataclass(frozen=True)
class SyntheticCategory:
    """One category: ``name`` is "<colour>-<texture>-<shape>", e.g. "red-striped-disc"."""

    id: int
    name: str
    color_name: str
    texture: str
    shape: str
    color: Tuple[int, int, int]


def semantic_categories() -> List[SyntheticCategory]:
    """The 108 categories, ids ordered by (shape, colour, texture)."""
    cats = []
    for shape in SHAPES:
        for color_name, color in COLORS.items():
            for texture in TEXTURES:
                cats.append(
                    SyntheticCategory(len(cats), f"{color_name}-{texture}-{shape}", color_name, texture, shape, color)
                )
    return cats


_SPLITS = {"synthetic_sem_seg_train": "training", "synthetic_sem_seg_val": "validation"}


def ensure_synthetic_dataset(root: Path, task: str, what: str, generate: Callable[[Path], Path]) -> None:
    """Generate a synthetic dataset at ``root`` with default settings (``generate(root)``) unless
    ``root/categories.json`` marks it complete; ``task`` is its ``--task`` name, ``what`` its description.

    Raises:
        FileExistsError: ``root`` holds something else (the message says how to regenerate it).
    """
    if (root / "categories.json").is_file():
        return
    logger.warning("Synthetic %s dataset not found at %s; generating it now (takes a few seconds).", what, root)
    try:
        generate(root)
    except FileExistsError as e:
        if not (root / "categories.json").is_file():  # not another process finishing it meanwhile
            raise FileExistsError(
                f"{root} exists but is not a complete synthetic dataset (no categories.json). Delete it, or run "
                f"`python -m mask2former_rankseg.data.synthetic --task {task} --out {root} --overwrite`.") from e


def synthetic_sem_seg_dir() -> Path:
    """``$DETECTRON2_DATASETS/synthetic/sem_seg`` (read at call time)."""
    return dataset_root() / "synthetic" / "sem_seg"


def load_synthetic_sem_seg(name: str) -> List[Dict[str, Any]]:
    """Dataset dicts of ``synthetic_sem_seg_{train,val}``; generates the dataset (default settings)
    first when it is missing."""
    from ..synthetic import generate_semantic_dataset, load_categories  # the generator is only needed here

    root = synthetic_sem_seg_dir()
    ensure_synthetic_dataset(root, "semantic", "semantic", generate_semantic_dataset)
    info = load_categories(root)
    split = _SPLITS[name]
    image_dir, gt_dir = root / "images" / split, root / "annotations_detectron2" / split
    set_metadata_roots(name, image_dir, gt_dir)
    return load_sem_seg(gt_dir, image_dir, gt_ext="png", image_ext="png", image_size=tuple(info["image_size"]))


def register_all_synthetic_sem_seg() -> None:
    """Register ``synthetic_sem_seg_train`` / ``synthetic_sem_seg_val`` (cheap: nothing is read)."""
    categories = semantic_categories()
    for name, split in _SPLITS.items():
        if name in DatasetCatalog:
            continue
        DatasetCatalog.register(name, lambda name=name: load_synthetic_sem_seg(name))
        root = synthetic_sem_seg_dir()
        MetadataCatalog.get(name).set(
            stuff_classes=[c.name for c in categories],
            stuff_colors=[list(c.color) for c in categories],
            ignore_label=IGNORE_LABEL,
            evaluator_type="sem_seg",
            image_root=str(root / "images" / split),
            sem_seg_root=str(root / "annotations_detectron2" / split),
        )

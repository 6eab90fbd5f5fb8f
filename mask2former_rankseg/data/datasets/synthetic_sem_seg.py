"""Synthetic semantic segmentation: category tables and loaders.

Two variants, each a product of shapes x colours x textures:

- ``synthetic_sem_seg_{train,val}``: 108 categories (3 shapes x 12 colours x 3 textures), in
  ``$DETECTRON2_DATASETS/synthetic/sem_seg/``;
- ``synthetic_sem_seg_864_{train,val}``: 864 categories (6 shapes x 24 colours x 6 textures), the many-class
  regime of ADE20K-Full (847), in ``$DETECTRON2_DATASETS/synthetic/sem_seg_864/``.

The data are in ADE20K's layout (see ``mask2former_rankseg/data/synthetic.py``) and are generated on the first
``DatasetCatalog.get`` when missing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import numpy as np

from ...constants import IGNORE_LABEL, IGNORE_LABEL_16BIT
from ..catalog import DatasetCatalog, MetadataCatalog
from .sem_seg import dataset_root, load_sem_seg, set_metadata_roots

__all__ = [
    "SHAPES",
    "COLORS",
    "TEXTURES",
    "CATEGORY_SETS",
    "label_encoding",
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

# The many-class variant: every shape and texture the renderer knows, and 12 more colours (each at least ~50 RGB
# units from the others, so the +-12 per-object jitter keeps them apart).
MORE_SHAPES: Tuple[str, ...] = SHAPES + ("square", "diamond", "triangle")
MORE_COLORS: Dict[str, Tuple[int, int, int]] = {
    **COLORS,
    "pink": (250, 160, 200),
    "brown": (130, 70, 20),
    "olive": (120, 120, 20),
    "navy": (20, 20, 110),
    "maroon": (120, 10, 40),
    "beige": (230, 210, 160),
    "sky": (120, 180, 250),
    "mint": (150, 250, 190),
    "violet": (190, 130, 250),
    "gold": (200, 170, 20),
    "salmon": (250, 110, 100),
    "indigo": (70, 20, 130),
}
MORE_TEXTURES: Tuple[str, ...] = TEXTURES + ("vstriped", "dstriped", "dotted")

CATEGORY_SETS: Dict[int, Tuple[Tuple[str, ...], Dict[str, Tuple[int, int, int]], Tuple[str, ...]]] = {
    108: (SHAPES, COLORS, TEXTURES),
    864: (MORE_SHAPES, MORE_COLORS, MORE_TEXTURES),
}
"""Number of categories -> (shapes, colours, textures) whose product they are."""


@dataclass(frozen=True)
class SyntheticCategory:
    """One category: ``name`` is "<colour>-<texture>-<shape>", e.g. "red-striped-disc"."""

    id: int
    name: str
    color_name: str
    texture: str
    shape: str
    color: Tuple[int, int, int]


def label_encoding(num_classes: int) -> Tuple[type, int]:
    """(numpy dtype, ignore label) of the label maps: uint8 with 255 up to 255 categories, else uint16 with 65535
    (as ADE20K-Full's)."""
    return (np.uint8, IGNORE_LABEL) if num_classes < IGNORE_LABEL else (np.uint16, IGNORE_LABEL_16BIT)


def semantic_categories(num_classes: int = 108) -> List[SyntheticCategory]:
    """The categories of the ``num_classes`` variant (108 or 864), ids ordered by (shape, colour, texture)."""
    if num_classes not in CATEGORY_SETS:
        raise ValueError(f"No synthetic semantic variant with {num_classes} categories; choose one of "
                         f"{sorted(CATEGORY_SETS)}.")
    shapes, colors, textures = CATEGORY_SETS[num_classes]
    cats = []
    for shape in shapes:
        for color_name, color in colors.items():
            for texture in textures:
                cats.append(
                    SyntheticCategory(len(cats), f"{color_name}-{texture}-{shape}", color_name, texture, shape, color)
                )
    return cats


_SPLITS = {"train": "training", "val": "validation"}
_VARIANTS: Dict[str, int] = {"synthetic_sem_seg": 108, "synthetic_sem_seg_864": 864}
"""Dataset name prefix -> number of categories."""
_GENERATION_ARGS: Dict[int, Dict[str, int]] = {108: {}, 864: {"num_classes": 864, "num_train": 4000, "num_val": 400}}
"""What :func:`generate_semantic_dataset` gets on first use beyond its defaults (108 categories, 2000 + 200 images):
the many-class variant has twice as many images, so that each category appears in about 19 training and 2
validation images."""


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


def _variant(name: str) -> Tuple[str, int, str]:
    """``synthetic_sem_seg[_864]_{train,val}`` -> (prefix, number of categories, split folder)."""
    prefix, _, split = name.rpartition("_")
    if prefix not in _VARIANTS or split not in _SPLITS:
        raise KeyError(f"{name!r} is not a synthetic semantic dataset; known: "
                       f"{sorted(f'{p}_{s}' for p in _VARIANTS for s in _SPLITS)}.")
    return prefix, _VARIANTS[prefix], _SPLITS[split]


def synthetic_sem_seg_dir(num_classes: int = 108) -> Path:
    """``$DETECTRON2_DATASETS/synthetic/sem_seg`` (108 categories) or ``.../sem_seg_864`` (read at call time)."""
    folder = "sem_seg" if num_classes == 108 else f"sem_seg_{num_classes}"
    return dataset_root() / "synthetic" / folder


def load_synthetic_sem_seg(name: str) -> List[Dict[str, Any]]:
    """Dataset dicts of ``synthetic_sem_seg[_864]_{train,val}``; generates the dataset (default settings) first
    when it is missing."""
    from ..synthetic import generate_semantic_dataset, load_categories  # the generator is only needed here

    _, num_classes, split = _variant(name)
    root = synthetic_sem_seg_dir(num_classes)
    task = "semantic" if num_classes == 108 else f"semantic --num-classes {num_classes}"
    ensure_synthetic_dataset(root, task, "semantic",
                             lambda out: generate_semantic_dataset(out, **_GENERATION_ARGS[num_classes]))
    info = load_categories(root)
    if len(info["categories"]) != num_classes:
        raise ValueError(f"{root / 'categories.json'} describes {len(info['categories'])} categories, but {name} "
                         f"has {num_classes}; regenerate it with --num-classes {num_classes} --overwrite.")
    image_dir, gt_dir = root / "images" / split, root / "annotations_detectron2" / split
    set_metadata_roots(name, image_dir, gt_dir)
    return load_sem_seg(gt_dir, image_dir, gt_ext="png", image_ext="png", image_size=tuple(info["image_size"]))


def register_all_synthetic_sem_seg() -> None:
    """Register ``synthetic_sem_seg[_864]_{train,val}`` (cheap: nothing is read)."""
    for prefix, num_classes in _VARIANTS.items():
        categories = semantic_categories(num_classes)
        root = synthetic_sem_seg_dir(num_classes)
        for split_name, split in _SPLITS.items():
            name = f"{prefix}_{split_name}"
            if name in DatasetCatalog:
                continue
            DatasetCatalog.register(name, lambda name=name: load_synthetic_sem_seg(name))
            MetadataCatalog.get(name).set(
                stuff_classes=[c.name for c in categories],
                stuff_colors=[list(c.color) for c in categories],
                ignore_label=label_encoding(num_classes)[1],
                evaluator_type="sem_seg",
                image_root=str(root / "images" / split),
                sem_seg_root=str(root / "annotations_detectron2" / split),
            )

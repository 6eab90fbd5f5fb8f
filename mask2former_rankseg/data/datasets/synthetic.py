"""Registration of the embedded synthetic datasets (generated under ``$DETECTRON2_DATASETS/synthetic/`` on the first
``DatasetCatalog.get`` when missing; see :mod:`mask2former_rankseg.data.synthetic` for what they hold):

- ``synthetic_sem_seg_{train,val}``: semantic, 108 categories, in ``synthetic/sem_seg/``;
- ``synthetic_sem_seg_864_{train,val}``: semantic, 864 categories (the many-class regime of ADE20K-Full), in
  ``synthetic/sem_seg_864/``;
- ``synthetic_panoptic_{train,val}``: COCO panoptic format, 108 things + 8 stuff, in ``synthetic/panoptic/``;
- ``synthetic_ytvis_{train,val}``: YouTube-VIS format, 48 categories, in ``synthetic/ytvis/``;
- ``synthetic_vspw_{train,val}``: VSPW layout, the same 48 categories, in ``synthetic/vspw/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Tuple

from ..catalog import DatasetCatalog
from ..synthetic import (
    ensure_synthetic_dataset,
    generate_panoptic_dataset,
    generate_semantic_dataset,
    generate_vspw_dataset,
    generate_ytvis_dataset,
    label_encoding,
    load_categories,
    panoptic_categories,
    semantic_categories,
    video_categories,
    ytvis_categories,
)
from .panoptic import PanopticPaths, register_panoptic_dataset
from .sem_seg import dataset_root, load_sem_seg, register_sem_seg, set_metadata_roots
from .vspw import VSPW_EVAL_CLIP_LENGTH, register_vspw
from .ytvis import register_ytvis_instances

__all__ = [
    "register_all_synthetic",
    "synthetic_sem_seg_dir",
    "synthetic_panoptic_dir",
    "synthetic_ytvis_dir",
    "synthetic_vspw_dir",
    "load_synthetic_sem_seg",
]

_SPLITS = {"train": "training", "val": "validation"}
_SEM_SEG_VARIANTS: Dict[str, int] = {"synthetic_sem_seg": 108, "synthetic_sem_seg_864": 864}
"""Dataset name prefix -> number of categories."""
GENERATION_ARGS: Dict[int, Dict[str, int]] = {108: {}, 864: {"num_classes": 864, "num_train": 4000, "num_val": 400}}
"""What :func:`generate_semantic_dataset` gets on first use beyond its defaults (108 categories, 2000 + 200 images):
the many-class variant has twice as many images, so that each category appears in about 19 training and 2
validation images."""


def synthetic_sem_seg_dir(num_classes: int = 108) -> Path:
    """``$DETECTRON2_DATASETS/synthetic/sem_seg`` (108 categories) or ``.../sem_seg_864`` (read at call time)."""
    folder = "sem_seg" if num_classes == 108 else f"sem_seg_{num_classes}"
    return dataset_root() / "synthetic" / folder


def synthetic_panoptic_dir() -> Path:
    """``$DETECTRON2_DATASETS/synthetic/panoptic`` (read at call time)."""
    return dataset_root() / "synthetic" / "panoptic"


def synthetic_ytvis_dir() -> Path:
    """``$DETECTRON2_DATASETS/synthetic/ytvis`` (read at call time)."""
    return dataset_root() / "synthetic" / "ytvis"


def synthetic_vspw_dir() -> Path:
    """``$DETECTRON2_DATASETS/synthetic/vspw``: a ``VSPW_480p``-layout folder (read at call time)."""
    return dataset_root() / "synthetic" / "vspw"


def _sem_seg_variant(name: str) -> Tuple[int, str]:
    """``synthetic_sem_seg[_864]_{train,val}`` -> (number of categories, split folder)."""
    prefix, _, split = name.rpartition("_")
    if prefix not in _SEM_SEG_VARIANTS or split not in _SPLITS:
        raise KeyError(f"{name!r} is not a synthetic semantic dataset; known: "
                       f"{sorted(f'{p}_{s}' for p in _SEM_SEG_VARIANTS for s in _SPLITS)}.")
    return _SEM_SEG_VARIANTS[prefix], _SPLITS[split]


def load_synthetic_sem_seg(name: str) -> List[Dict[str, Any]]:
    """Dataset dicts of ``synthetic_sem_seg[_864]_{train,val}``; generates the dataset (default settings) first
    when it is missing."""
    num_classes, split = _sem_seg_variant(name)
    root = synthetic_sem_seg_dir(num_classes)
    task = "semantic" if num_classes == 108 else f"semantic --num-classes {num_classes}"
    ensure_synthetic_dataset(root, task, "semantic",
                             lambda out: generate_semantic_dataset(out, **GENERATION_ARGS[num_classes]))
    info = load_categories(root)
    if len(info["categories"]) != num_classes:
        raise ValueError(f"{root / 'categories.json'} describes {len(info['categories'])} categories, but {name} "
                         f"has {num_classes}; regenerate it with --num-classes {num_classes} --overwrite.")
    image_dir, gt_dir = root / "images" / split, root / "annotations_detectron2" / split
    set_metadata_roots(name, image_dir, gt_dir)
    return load_sem_seg(gt_dir, image_dir, gt_ext="png", image_ext="png", image_size=tuple(info["image_size"]))


def _panoptic_paths(split: str, generate: bool = True) -> PanopticPaths:
    """Paths of the synthetic panoptic dataset; with ``generate``, it is generated (default settings) first
    when missing."""
    root = synthetic_panoptic_dir()
    if generate:
        ensure_synthetic_dataset(root, "panoptic", "panoptic", generate_panoptic_dataset)
    folder = _SPLITS[split]
    return (root / "images" / folder, root / "panoptic" / folder, root / f"panoptic_{split}.json",
            root / "panoptic_semseg" / folder, None)


def _ytvis_paths(split: str, generate: bool = True) -> Tuple[Path, Path]:
    root = synthetic_ytvis_dir()
    if generate:
        ensure_synthetic_dataset(root, "video", "YouTube-VIS", generate_ytvis_dataset)
    folder = {"train": "train", "val": "valid"}[split]
    return root / folder / "JPEGImages", root / f"{folder}.json"


def _vspw_paths(split: str, generate: bool = True) -> Tuple[Path, Path]:
    root = synthetic_vspw_dir()
    if generate:
        ensure_synthetic_dataset(root, "vspw", "VSPW", generate_vspw_dataset)
    return root, root / f"{split}.txt"


def register_all_synthetic() -> None:
    """Register every synthetic dataset (cheap: nothing is read or generated; idempotent)."""
    for prefix, num_classes in _SEM_SEG_VARIANTS.items():
        categories = semantic_categories(num_classes)
        root = synthetic_sem_seg_dir(num_classes)
        for split_name, split in _SPLITS.items():
            name = f"{prefix}_{split_name}"
            register_sem_seg(name, lambda name=name: load_synthetic_sem_seg(name),
                             stuff_classes=[c.name for c in categories], stuff_colors=[c.color for c in categories],
                             ignore_label=label_encoding(num_classes)[1], image_root=root / "images" / split,
                             sem_seg_root=root / "annotations_detectron2" / split)

    panoptic = tuple((c["id"], c["name"], c["isthing"], tuple(c["color"])) for c in panoptic_categories())
    video_classes = tuple(c.name for c in video_categories())
    video_colors = [list(c.color) for c in video_categories()]
    for split in _SPLITS:
        name = f"synthetic_panoptic_{split}"
        if name not in DatasetCatalog:
            register_panoptic_dataset(name, panoptic, lambda split=split: _panoptic_paths(split), image_ext="png",
                                      initial_paths=_panoptic_paths(split, generate=False))
        name = f"synthetic_ytvis_{split}"
        if name not in DatasetCatalog:
            register_ytvis_instances(name, ytvis_categories(), lambda split=split: _ytvis_paths(split),
                                     initial_paths=_ytvis_paths(split, generate=False))
        name = f"synthetic_vspw_{split}"
        if name not in DatasetCatalog:
            register_vspw(name, lambda split=split: _vspw_paths(split),
                          clip_length=VSPW_EVAL_CLIP_LENGTH if split == "val" else None, classes=video_classes,
                          initial_paths=_vspw_paths(split, generate=False), stuff_colors=video_colors)

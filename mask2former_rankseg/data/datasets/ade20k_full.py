"""ADE20K-Full (847 classes, from the ADE20K-2021 release) semantic segmentation: categories and loaders.

Layout under ``$DETECTRON2_DATASETS`` (Mask2Former's)::

    ADE20K_2021_17_01/
      index_ade20k.pkl, objects.txt, images/ADE/{training,validation}/...   # the release
      images_detectron2/{training,validation}/*.jpg        # datasets/prepare_ade20k_full_sem_seg.py
      annotations_detectron2/{training,validation}/*.tif   # uint16: 0..846 classes, 65535 = ignore
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Tuple

from ...constants import IGNORE_LABEL_16BIT
from ._ade20k_full_categories import ADE20K_FULL_CATEGORIES
from .palette import voc_colormap
from .sem_seg import dataset_root, load_sem_seg, register_sem_seg, require_dir, set_metadata_roots

__all__ = [
    "ADE20K_FULL_CATEGORIES",
    "ADE20K_FULL_IGNORE_LABEL",
    "ADE20K_FULL_ROOT",
    "load_ade20k_full_sem_seg",
    "register_all_ade20k_full",
]

ADE20K_FULL_ROOT = "ADE20K_2021_17_01"
ADE20K_FULL_IGNORE_LABEL = IGNORE_LABEL_16BIT
"""Label maps are 16-bit; unlabelled pixels and objects outside the 847 classes carry this value (upstream's)."""

_SPLITS = {"ade20k_full_sem_seg_train": "training", "ade20k_full_sem_seg_val": "validation"}


def _dirs(split: str) -> Tuple[Path, Path]:
    root = dataset_root() / ADE20K_FULL_ROOT
    return root / "images_detectron2" / split, root / "annotations_detectron2" / split


def load_ade20k_full_sem_seg(name: str) -> List[Dict[str, Any]]:
    """Dataset dicts of ``ade20k_full_sem_seg_{train,val}`` under the current ``$DETECTRON2_DATASETS``."""
    image_dir, gt_dir = _dirs(_SPLITS[name])
    fix = ("Download ADE20K_2021_17_01 from https://groups.csail.mit.edu/vision/datasets/ADE20K/, unzip it into "
           "$DETECTRON2_DATASETS and run `python datasets/prepare_ade20k_full_sem_seg.py`.")
    require_dir(image_dir, "ADE20K-Full images", fix)
    require_dir(gt_dir, "ADE20K-Full labels", fix)
    set_metadata_roots(name, image_dir, gt_dir)
    return load_sem_seg(gt_dir, image_dir, gt_ext="tif", image_ext="jpg")


def register_all_ade20k_full() -> None:
    """Register ``ade20k_full_sem_seg_train`` / ``ade20k_full_sem_seg_val`` (nothing is read).

    Metadata as upstream (``stuff_classes``, ``ignore_label=65535``, ``evaluator_type="sem_seg"``) plus
    ``stuff_dataset_id_to_contiguous_id`` (ADE object id -> label) and ``stuff_colors`` (upstream has none:
    PASCAL VOC's colour map, :func:`voc_colormap`).
    """
    for name, split in _SPLITS.items():
        image_dir, gt_dir = _dirs(split)
        register_sem_seg(
            name, lambda name=name: load_ade20k_full_sem_seg(name),
            stuff_classes=[n for _, n in ADE20K_FULL_CATEGORIES],
            stuff_colors=voc_colormap(len(ADE20K_FULL_CATEGORIES)),
            ignore_label=ADE20K_FULL_IGNORE_LABEL, image_root=image_dir, sem_seg_root=gt_dir,
            stuff_dataset_id_to_contiguous_id={cid: i for i, (cid, _) in enumerate(ADE20K_FULL_CATEGORIES)},
        )

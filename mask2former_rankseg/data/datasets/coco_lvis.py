"""COCO+LVIS semantic segmentation (1,284 classes, RankSeg's large-vocabulary benchmark): categories, loaders.

The classes are RankSeg's ``COCO_LVIS_CLASSES`` (``mmseg/mmseg/datasets/misc.py``): the 1,203 LVIS v1
categories in id order, then the 81 COCO-Stuff stuff classes whose names are not LVIS names (the other 10 --
banner, blanket, cabinet, cupboard, curtain, napkin, pillow, salad, table, towel -- are LVIS categories too
and take the LVIS label). ``datasets/prepare_coco_lvis_sem_seg.py`` builds the label maps; datasets/README.md
states the construction.

Layout under ``$DETECTRON2_DATASETS``::

    coco/
      train2017/ val2017/                              # COCO 2017 images (LVIS v1 uses both for val)
      annotations/lvis_v1_train.json lvis_v1_val.json  # LVIS v1 instance annotations
      stuffthingmaps/{train2017,val2017}/*.png         # COCO-Stuff (stuffthingmaps_trainval2017.zip)
      coco_lvis_detectron2/{train,val}/*.png           # uint16: 0..1283 = classes, 65535 = ignore
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np

from ...constants import IGNORE_LABEL_16BIT
from ._lvis_v1_categories import LVIS_V1_CATEGORY_NAMES
from .coco_stuff import COCO_STUFF_CATEGORIES
from .palette import voc_colormap
from .sem_seg import dataset_root, label_stems, load_sem_seg, register_sem_seg, require_dir, update_metadata

__all__ = [
    "COCO_LVIS_CLASSES",
    "COCO_LVIS_IGNORE_LABEL",
    "COCO_LVIS_STUFF_NAMES",
    "LVIS_V1_CATEGORY_NAMES",
    "coco_lvis_stuff_lut",
    "load_coco_lvis_sem_seg",
    "register_all_coco_lvis",
]

COCO_LVIS_IGNORE_LABEL = IGNORE_LABEL_16BIT
"""16-bit label maps; unlabelled pixels (and COCO thing pixels that no LVIS mask covers) carry this value."""

_FIRST_STUFF_ID = 92  # COCO-Stuff's stuff categories are ids 92..182
COCO_LVIS_STUFF_NAMES: Tuple[str, ...] = tuple(
    name for cid, name, _ in COCO_STUFF_CATEGORIES if cid >= _FIRST_STUFF_ID and name not in LVIS_V1_CATEGORY_NAMES
)
COCO_LVIS_CLASSES: Tuple[str, ...] = LVIS_V1_CATEGORY_NAMES + COCO_LVIS_STUFF_NAMES

_SPLITS = {"coco_lvis_sem_seg_train": "train", "coco_lvis_sem_seg_val": "val"}
_IMAGE_DIRS = ("train2017", "val2017")


def coco_lvis_stuff_lut() -> np.ndarray:
    """[256] int64 lookup from a COCO-Stuff ``stuffthingmaps`` value (COCO id - 1, 255 unlabelled) to the
    COCO+LVIS label of that stuff class; things, "other" and unlabelled map to the ignore label."""
    label_of = {name: i for i, name in enumerate(COCO_LVIS_CLASSES)}
    lut = np.full(256, COCO_LVIS_IGNORE_LABEL, dtype=np.int64)
    for cid, name, _ in COCO_STUFF_CATEGORIES:
        if cid >= _FIRST_STUFF_ID:
            lut[cid - 1] = label_of[name]
    return lut


def _dirs(split: str) -> Tuple[Path, Path]:
    root = dataset_root() / "coco"
    return root, root / "coco_lvis_detectron2" / split


def load_coco_lvis_sem_seg(name: str) -> List[Dict[str, Any]]:
    """Dataset dicts of ``coco_lvis_sem_seg_{train,val}``: the images with a label map of the split, found in
    ``coco/train2017`` or ``coco/val2017``."""
    coco_dir, gt_dir = _dirs(_SPLITS[name])
    fix = ("Download COCO 2017 images, COCO-Stuff's stuffthingmaps_trainval2017.zip and LVIS v1 annotations, then "
           "run `python datasets/prepare_coco_lvis_sem_seg.py`.")
    image_dirs = [coco_dir / d for d in _IMAGE_DIRS]
    for d in image_dirs:
        require_dir(d, "COCO images", fix)
    require_dir(gt_dir, "COCO+LVIS labels", fix)
    update_metadata(name, image_root=str(coco_dir), sem_seg_root=str(gt_dir))
    return load_sem_seg(gt_dir, image_dirs, gt_ext="png", image_ext="jpg", stems=label_stems(gt_dir))


def register_all_coco_lvis() -> None:
    """Register ``coco_lvis_sem_seg_{train,val}`` (nothing is read). Colours are RankSeg's palette (PASCAL VOC's
    colour map); ``image_root`` is the ``coco`` folder (images lie in its ``train2017`` and ``val2017``)."""
    for name, split in _SPLITS.items():
        coco_dir, gt_dir = _dirs(split)
        register_sem_seg(
            name, lambda name=name: load_coco_lvis_sem_seg(name),
            stuff_classes=COCO_LVIS_CLASSES, stuff_colors=voc_colormap(len(COCO_LVIS_CLASSES)),
            ignore_label=COCO_LVIS_IGNORE_LABEL, image_root=coco_dir, sem_seg_root=gt_dir,
        )

"""Pascal-Context (VOC2010 images, 59 classes / 60 with background) semantic segmentation: categories, loaders.

Layout under ``$DETECTRON2_DATASETS``::

    VOCdevkit/VOC2010/
      JPEGImages/*.jpg                   # VOC2010 trainval images
      trainval_merged.json               # Pascal-Context annotations (the "Detail" release)
      annotations_detectron2/            # datasets/prepare_pascal_context.py (uint8 PNG):
        pascal_context_59/{train,val}/   #   0..58 = the 59 classes, 255 = ignore (everything else)
        pascal_context_60/{train,val}/   #   0 = background (everything else), 1..59 = the 59 classes

Upstream Mask2Former / RankSeg register no Pascal-Context dataset in detectron2 (RankSeg trains on it through
its mmsegmentation fork); the names here are ``pascal_context_{59,60}_sem_seg_{train,val}``. Train has
4,998 images and val 5,105.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np

from ...constants import IGNORE_LABEL
from .sem_seg import dataset_root, label_stems, load_sem_seg, register_sem_seg, require_dir, set_metadata_roots

__all__ = [
    "PASCAL_CONTEXT_60_CATEGORIES",
    "pascal_context_label_lut",
    "load_pascal_context_sem_seg",
    "register_all_pascal_context",
]

# (category id in trainval_merged.json, name, colour) in 60-class label order; id 0 is the background. Ids are
# those of mmsegmentation's converter (``tools/convert_datasets/pascal_context.py``, ``_mapping``), names and
# colours those of RankSeg's PascalContextDataset (``mmseg/mmseg/datasets/pascal_context.py``). The 59-class
# labels are these minus one, without the background.
PASCAL_CONTEXT_60_CATEGORIES: Tuple[Tuple[int, str, Tuple[int, int, int]], ...] = (
    (0, 'background', (120, 120, 120)),
    (2, 'aeroplane', (180, 120, 120)),
    (9, 'bag', (6, 230, 230)),
    (18, 'bed', (80, 50, 50)),
    (19, 'bedclothes', (4, 200, 3)),
    (22, 'bench', (120, 120, 80)),
    (23, 'bicycle', (140, 140, 140)),
    (25, 'bird', (204, 5, 255)),
    (31, 'boat', (230, 230, 230)),
    (33, 'book', (4, 250, 7)),
    (34, 'bottle', (224, 5, 255)),
    (44, 'building', (235, 255, 7)),
    (45, 'bus', (150, 5, 61)),
    (46, 'cabinet', (120, 120, 70)),
    (59, 'car', (8, 255, 51)),
    (65, 'cat', (255, 6, 82)),
    (68, 'ceiling', (143, 255, 140)),
    (72, 'chair', (204, 255, 4)),
    (80, 'cloth', (255, 51, 7)),
    (85, 'computer', (204, 70, 3)),
    (98, 'cow', (0, 102, 200)),
    (104, 'cup', (61, 230, 250)),
    (105, 'curtain', (255, 6, 51)),
    (113, 'dog', (11, 102, 255)),
    (115, 'door', (255, 7, 71)),
    (144, 'fence', (255, 9, 224)),
    (158, 'floor', (9, 7, 230)),
    (159, 'flower', (220, 220, 220)),
    (162, 'food', (255, 9, 92)),
    (187, 'grass', (112, 9, 255)),
    (189, 'ground', (8, 255, 214)),
    (207, 'horse', (7, 255, 224)),
    (220, 'keyboard', (255, 184, 6)),
    (232, 'light', (10, 255, 71)),
    (258, 'motorbike', (255, 41, 10)),
    (259, 'mountain', (7, 255, 255)),
    (260, 'mouse', (224, 255, 8)),
    (284, 'person', (102, 8, 255)),
    (295, 'plate', (255, 61, 6)),
    (296, 'platform', (255, 194, 7)),
    (308, 'pottedplant', (255, 122, 8)),
    (324, 'road', (0, 255, 20)),
    (326, 'rock', (255, 8, 41)),
    (347, 'sheep', (255, 5, 153)),
    (349, 'shelves', (6, 51, 255)),
    (354, 'sidewalk', (235, 12, 255)),
    (355, 'sign', (160, 150, 20)),
    (360, 'sky', (0, 163, 255)),
    (366, 'snow', (140, 140, 140)),
    (368, 'sofa', (250, 10, 15)),
    (397, 'table', (20, 255, 0)),
    (415, 'track', (31, 255, 0)),
    (416, 'train', (255, 31, 0)),
    (420, 'tree', (255, 224, 0)),
    (424, 'truck', (153, 255, 0)),
    (427, 'tvmonitor', (0, 0, 255)),
    (440, 'wall', (255, 71, 0)),
    (445, 'water', (0, 235, 255)),
    (454, 'window', (0, 173, 255)),
    (458, 'wood', (31, 0, 255)),
)

_NAMES = {f"pascal_context_{n}_sem_seg_{s}": (n, s) for n in (59, 60) for s in ("train", "val")}


def pascal_context_label_lut(max_id: int) -> np.ndarray:
    """[max_id + 1] int64 lookup from a trainval_merged.json category id (0 = unannotated) to the 60-class
    label: 1..59 for the 59 classes, 0 (background) for every other id."""
    lut = np.zeros(max_id + 1, dtype=np.int64)
    for label, (cid, _, _) in enumerate(PASCAL_CONTEXT_60_CATEGORIES):
        if cid <= max_id:
            lut[cid] = label
    return lut


def _dirs(num_classes: int, split: str) -> Tuple[Path, Path]:
    root = dataset_root() / "VOCdevkit" / "VOC2010"
    return root / "JPEGImages", root / "annotations_detectron2" / f"pascal_context_{num_classes}" / split


def load_pascal_context_sem_seg(name: str) -> List[Dict[str, Any]]:
    """Dataset dicts of ``pascal_context_{59,60}_sem_seg_{train,val}``: the images that have a label map of
    the split (``JPEGImages`` holds all of VOC2010)."""
    image_dir, gt_dir = _dirs(*_NAMES[name])
    fix = ("Download VOC2010 (VOCtrainval_03-May-2010.tar) and Pascal-Context's trainval_merged.json, then run "
           "`python datasets/prepare_pascal_context.py`.")
    require_dir(image_dir, "VOC2010 images", fix)
    require_dir(gt_dir, "Pascal-Context labels", fix)
    set_metadata_roots(name, image_dir, gt_dir)
    return load_sem_seg(gt_dir, image_dir, gt_ext="png", image_ext="jpg", stems=label_stems(gt_dir))


def register_all_pascal_context() -> None:
    """Register the four Pascal-Context datasets (nothing is read); ``stuff_dataset_id_to_contiguous_id`` maps
    trainval_merged.json category ids to labels."""
    for name, (num_classes, split) in _NAMES.items():
        categories = PASCAL_CONTEXT_60_CATEGORIES[60 - num_classes:]
        image_dir, gt_dir = _dirs(num_classes, split)
        register_sem_seg(
            name, lambda name=name: load_pascal_context_sem_seg(name),
            stuff_classes=[n for _, n, _ in categories], stuff_colors=[c for _, _, c in categories],
            ignore_label=IGNORE_LABEL, image_root=image_dir, sem_seg_root=gt_dir,
            stuff_dataset_id_to_contiguous_id={cid: i for i, (cid, _, _) in enumerate(categories)},
        )

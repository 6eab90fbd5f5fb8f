"""COCO-Stuff (171 classes: 80 things + 91 stuff) semantic segmentation, 164k and 10k: categories and loaders.

COCO-Stuff-164k, under ``$DETECTRON2_DATASETS``::

    coco/
      train2017/ val2017/                          # COCO 2017 images
      stuffthingmaps/{train2017,val2017}/*.png     # stuffthingmaps_trainval2017.zip: COCO id - 1, 255 unlabelled
      stuffthingmaps_detectron2/{train2017,val2017}/*.png   # datasets/prepare_coco_stuff_164k_sem_seg.py:
                                                            # 0..170, 255 = ignore

Registered as ``coco_2017_train_stuff_sem_seg`` / ``coco_2017_test_stuff_sem_seg`` (the names used by the
detectron2 projects that register COCO-Stuff-164k, e.g. zsseg.baseline; the "test" split is val2017).

COCO-Stuff-10k (release ``cocostuff-10k-v1.1``: 9,000 train / 1,000 test images of COCO 2014). RankSeg's
"COCO-Stuff" results (its mmsegmentation configs ``coco-stuff10k*.py`` and its Mask2Former fork) are on this 10k
version, not on 164k. MaskFormer's / Mask2Former's layout::

    coco/coco_stuff_10k/
      images/*.jpg  annotations/*.mat  imageLists/{train,test}.txt     # the release
      images_detectron2/{train,test}/*.jpg                             # datasets/prepare_coco_stuff_10k_sem_seg.py
      annotations_detectron2/{train,test}/*.png                        # 0..170, 255 = ignore

Registered as ``coco_stuff_10k_{train,test}_sem_seg`` and under the names of RankSeg's Mask2Former fork,
``coco_2017_{train,test}_stuff_10k_sem_seg``. Both versions share :data:`COCO_STUFF_CATEGORIES`: label i is the
i-th entry, the order of mmsegmentation's ``COCOStuffDataset.CLASSES`` and of the 10k converter's
``clsID_to_trID`` (COCO id -> i + 1, then ``reduce_zero_label``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np

from ...constants import IGNORE_LABEL
from .sem_seg import dataset_root, load_sem_seg, register_sem_seg, require_dir, set_metadata_roots

__all__ = [
    "COCO_STUFF_CATEGORIES",
    "COCO_STUFF_10K_ROOT",
    "coco_stuff_10k_label_lut",
    "coco_stuff_label_lut",
    "load_coco_stuff_10k_sem_seg",
    "load_coco_stuff_sem_seg",
    "register_all_coco_stuff",
]

# (COCO category id, name, colour) of the 171 classes in label order 0..170. Names and colours are RankSeg's
# (``mmseg/mmseg/datasets/coco_stuff.py``: COCOStuffDataset.CLASSES / PALETTE); the 80 thing ids are COCO's,
# the 91 stuff ids are 92..182.
COCO_STUFF_CATEGORIES: Tuple[Tuple[int, str, Tuple[int, int, int]], ...] = (
    (1, 'person', (0, 192, 64)),
    (2, 'bicycle', (0, 192, 64)),
    (3, 'car', (0, 64, 96)),
    (4, 'motorcycle', (128, 192, 192)),
    (5, 'airplane', (0, 64, 64)),
    (6, 'bus', (0, 192, 224)),
    (7, 'train', (0, 192, 192)),
    (8, 'truck', (128, 192, 64)),
    (9, 'boat', (0, 192, 96)),
    (10, 'traffic light', (128, 192, 64)),
    (11, 'fire hydrant', (128, 32, 192)),
    (13, 'stop sign', (0, 0, 224)),
    (14, 'parking meter', (0, 0, 64)),
    (15, 'bench', (0, 160, 192)),
    (16, 'bird', (128, 0, 96)),
    (17, 'cat', (128, 0, 192)),
    (18, 'dog', (0, 32, 192)),
    (19, 'horse', (128, 128, 224)),
    (20, 'sheep', (0, 0, 192)),
    (21, 'cow', (128, 160, 192)),
    (22, 'elephant', (128, 128, 0)),
    (23, 'bear', (128, 0, 32)),
    (24, 'zebra', (128, 32, 0)),
    (25, 'giraffe', (128, 0, 128)),
    (27, 'backpack', (64, 128, 32)),
    (28, 'umbrella', (0, 160, 0)),
    (31, 'handbag', (0, 0, 0)),
    (32, 'tie', (192, 128, 160)),
    (33, 'suitcase', (0, 32, 0)),
    (34, 'frisbee', (0, 128, 128)),
    (35, 'skis', (64, 128, 160)),
    (36, 'snowboard', (128, 160, 0)),
    (37, 'sports ball', (0, 128, 0)),
    (38, 'kite', (192, 128, 32)),
    (39, 'baseball bat', (128, 96, 128)),
    (40, 'baseball glove', (0, 0, 128)),
    (41, 'skateboard', (64, 0, 32)),
    (42, 'surfboard', (0, 224, 128)),
    (43, 'tennis racket', (128, 0, 0)),
    (44, 'bottle', (192, 0, 160)),
    (46, 'wine glass', (0, 96, 128)),
    (47, 'cup', (128, 128, 128)),
    (48, 'fork', (64, 0, 160)),
    (49, 'knife', (128, 224, 128)),
    (50, 'spoon', (128, 128, 64)),
    (51, 'bowl', (192, 0, 32)),
    (52, 'banana', (128, 96, 0)),
    (53, 'apple', (128, 0, 192)),
    (54, 'sandwich', (0, 128, 32)),
    (55, 'orange', (64, 224, 0)),
    (56, 'broccoli', (0, 0, 64)),
    (57, 'carrot', (128, 128, 160)),
    (58, 'hot dog', (64, 96, 0)),
    (59, 'pizza', (0, 128, 192)),
    (60, 'donut', (0, 128, 160)),
    (61, 'cake', (192, 224, 0)),
    (62, 'chair', (0, 128, 64)),
    (63, 'couch', (128, 128, 32)),
    (64, 'potted plant', (192, 32, 128)),
    (65, 'bed', (0, 64, 192)),
    (67, 'dining table', (0, 0, 32)),
    (70, 'toilet', (64, 160, 128)),
    (72, 'tv', (128, 64, 64)),
    (73, 'laptop', (128, 0, 160)),
    (74, 'mouse', (64, 32, 128)),
    (75, 'remote', (128, 192, 192)),
    (76, 'keyboard', (0, 0, 160)),
    (77, 'cell phone', (192, 160, 128)),
    (78, 'microwave', (128, 192, 0)),
    (79, 'oven', (128, 0, 96)),
    (80, 'toaster', (192, 32, 0)),
    (81, 'sink', (128, 64, 128)),
    (82, 'refrigerator', (64, 128, 96)),
    (84, 'book', (64, 160, 0)),
    (85, 'clock', (0, 64, 0)),
    (86, 'vase', (192, 128, 224)),
    (87, 'scissors', (64, 32, 0)),
    (88, 'teddy bear', (0, 192, 128)),
    (89, 'hair drier', (64, 128, 224)),
    (90, 'toothbrush', (192, 160, 0)),
    (92, 'banner', (0, 192, 0)),
    (93, 'blanket', (192, 128, 96)),
    (94, 'branch', (192, 96, 128)),
    (95, 'bridge', (0, 64, 128)),
    (96, 'building-other', (64, 0, 96)),
    (97, 'bush', (64, 224, 128)),
    (98, 'cabinet', (128, 64, 0)),
    (99, 'cage', (192, 0, 224)),
    (100, 'cardboard', (64, 96, 128)),
    (101, 'carpet', (128, 192, 128)),
    (102, 'ceiling-other', (64, 0, 224)),
    (103, 'ceiling-tile', (192, 224, 128)),
    (104, 'cloth', (128, 192, 64)),
    (105, 'clothes', (192, 0, 96)),
    (106, 'clouds', (192, 96, 0)),
    (107, 'counter', (128, 64, 192)),
    (108, 'cupboard', (0, 128, 96)),
    (109, 'curtain', (0, 224, 0)),
    (110, 'desk-stuff', (64, 64, 64)),
    (111, 'dirt', (128, 128, 224)),
    (112, 'door-stuff', (0, 96, 0)),
    (113, 'fence', (64, 192, 192)),
    (114, 'floor-marble', (0, 128, 224)),
    (115, 'floor-other', (128, 224, 0)),
    (116, 'floor-stone', (64, 192, 64)),
    (117, 'floor-tile', (128, 128, 96)),
    (118, 'floor-wood', (128, 32, 128)),
    (119, 'flower', (64, 0, 192)),
    (120, 'fog', (0, 64, 96)),
    (121, 'food-other', (0, 160, 128)),
    (122, 'fruit', (192, 0, 64)),
    (123, 'furniture-other', (128, 64, 224)),
    (124, 'grass', (0, 32, 128)),
    (125, 'gravel', (192, 128, 192)),
    (126, 'ground-other', (0, 64, 224)),
    (127, 'hill', (128, 160, 128)),
    (128, 'house', (192, 128, 0)),
    (129, 'leaves', (128, 64, 32)),
    (130, 'light', (128, 32, 64)),
    (131, 'mat', (192, 0, 128)),
    (132, 'metal', (64, 192, 32)),
    (133, 'mirror-stuff', (0, 160, 64)),
    (134, 'moss', (64, 0, 0)),
    (135, 'mountain', (192, 192, 160)),
    (136, 'mud', (0, 32, 64)),
    (137, 'napkin', (64, 128, 128)),
    (138, 'net', (64, 192, 160)),
    (139, 'paper', (128, 160, 64)),
    (140, 'pavement', (64, 128, 0)),
    (141, 'pillow', (192, 192, 32)),
    (142, 'plant-other', (128, 96, 192)),
    (143, 'plastic', (64, 0, 128)),
    (144, 'platform', (64, 64, 32)),
    (145, 'playingfield', (0, 224, 192)),
    (146, 'railing', (192, 0, 0)),
    (147, 'railroad', (192, 64, 160)),
    (148, 'river', (0, 96, 192)),
    (149, 'road', (192, 128, 128)),
    (150, 'rock', (64, 64, 160)),
    (151, 'roof', (128, 224, 192)),
    (152, 'rug', (192, 128, 64)),
    (153, 'salad', (192, 64, 32)),
    (154, 'sand', (128, 96, 64)),
    (155, 'sea', (192, 0, 192)),
    (156, 'shelf', (0, 192, 32)),
    (157, 'sky-other', (64, 224, 64)),
    (158, 'skyscraper', (64, 0, 64)),
    (159, 'snow', (128, 192, 160)),
    (160, 'solid-other', (64, 96, 64)),
    (161, 'stairs', (64, 128, 192)),
    (162, 'stone', (0, 192, 160)),
    (163, 'straw', (192, 224, 64)),
    (164, 'structural-other', (64, 128, 64)),
    (165, 'table', (128, 192, 32)),
    (166, 'tent', (192, 32, 192)),
    (167, 'textile-other', (64, 64, 192)),
    (168, 'towel', (0, 64, 32)),
    (169, 'tree', (64, 160, 192)),
    (170, 'vegetable', (192, 64, 64)),
    (171, 'wall-brick', (128, 64, 160)),
    (172, 'wall-concrete', (64, 32, 192)),
    (173, 'wall-other', (192, 192, 192)),
    (174, 'wall-panel', (0, 64, 160)),
    (175, 'wall-stone', (192, 160, 192)),
    (176, 'wall-tile', (192, 192, 0)),
    (177, 'wall-wood', (128, 64, 96)),
    (178, 'water-other', (192, 32, 64)),
    (179, 'waterdrops', (192, 64, 128)),
    (180, 'window-blind', (64, 192, 96)),
    (181, 'window-other', (64, 160, 64)),
    (182, 'wood', (64, 64, 0)),
)

COCO_STUFF_OTHER_ID = 183
"""COCO-Stuff's "other" class: not one of the 171, mapped to the ignore label (as COCO-Stuff's evaluation does)."""

COCO_STUFF_10K_MAX_ID = 182
"""Largest value of the 10k release's label maps (``S``: 0 = unlabelled, 1..182 = COCO-Stuff ids)."""

COCO_STUFF_10K_ROOT = Path("coco") / "coco_stuff_10k"
"""COCO-Stuff-10k's folder under ``$DETECTRON2_DATASETS`` (MaskFormer's / Mask2Former's layout)."""

_SPLITS = {"coco_2017_train_stuff_sem_seg": "train2017", "coco_2017_test_stuff_sem_seg": "val2017"}
_SPLITS_10K = {
    "coco_stuff_10k_train_sem_seg": "train",
    "coco_stuff_10k_test_sem_seg": "test",
    "coco_2017_train_stuff_10k_sem_seg": "train",  # the names of RankSeg's Mask2Former fork
    "coco_2017_test_stuff_10k_sem_seg": "test",
}


def coco_stuff_label_lut() -> np.ndarray:
    """[256] int64 lookup from a ``stuffthingmaps`` value (COCO id - 1, 255 unlabelled) to the label 0..170.

    "other" (id 183) and 255 map to the ignore label 255; values of unused COCO ids map to -1 (invalid).
    """
    lut = np.full(256, -1, dtype=np.int64)
    for label, (cid, _, _) in enumerate(COCO_STUFF_CATEGORIES):
        lut[cid - 1] = label
    lut[COCO_STUFF_OTHER_ID - 1] = IGNORE_LABEL
    lut[IGNORE_LABEL] = IGNORE_LABEL
    return lut


def coco_stuff_10k_label_lut() -> np.ndarray:
    """[183] int64 lookup from a COCO-Stuff-10k v1.1 ``S`` value to the label 0..170.

    As mmsegmentation's converter (``clsID_to_trID``: COCO id -> i + 1) followed by its ``reduce_zero_label``:
    COCO id c -> its index in :data:`COCO_STUFF_CATEGORIES`, 0 (unlabelled) -> 255. The 11 COCO ids without
    masks (12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91) also map to 255; mmsegmentation's table leaves them as
    they are, which would make them a neighbouring class, but they do not occur in COCO's annotations.
    """
    lut = np.full(COCO_STUFF_10K_MAX_ID + 1, IGNORE_LABEL, dtype=np.int64)
    for label, (cid, _, _) in enumerate(COCO_STUFF_CATEGORIES):
        lut[cid] = label
    return lut


def _dirs(split: str) -> Tuple[Path, Path]:
    root = dataset_root() / "coco"
    return root / split, root / "stuffthingmaps_detectron2" / split


def load_coco_stuff_sem_seg(name: str) -> List[Dict[str, Any]]:
    """Dataset dicts of ``coco_2017_{train,test}_stuff_sem_seg`` under the current ``$DETECTRON2_DATASETS``."""
    image_dir, gt_dir = _dirs(_SPLITS[name])
    require_dir(image_dir, "COCO images", "Download COCO 2017 images from https://cocodataset.org/#download.")
    require_dir(gt_dir, "COCO-Stuff labels",
                "Unzip stuffthingmaps_trainval2017.zip into coco/stuffthingmaps and run "
                "`python datasets/prepare_coco_stuff_164k_sem_seg.py`.")
    set_metadata_roots(name, image_dir, gt_dir)
    return load_sem_seg(gt_dir, image_dir, gt_ext="png", image_ext="jpg")


def _dirs_10k(split: str) -> Tuple[Path, Path]:
    root = dataset_root() / COCO_STUFF_10K_ROOT
    return root / "images_detectron2" / split, root / "annotations_detectron2" / split


def load_coco_stuff_10k_sem_seg(name: str) -> List[Dict[str, Any]]:
    """Dataset dicts of ``coco_stuff_10k_{train,test}_sem_seg`` under the current ``$DETECTRON2_DATASETS``."""
    image_dir, gt_dir = _dirs_10k(_SPLITS_10K[name])
    fix = ("Unzip cocostuff-10k-v1.1.zip into coco/coco_stuff_10k and run "
           "`python datasets/prepare_coco_stuff_10k_sem_seg.py`.")
    require_dir(image_dir, "COCO-Stuff-10k images", fix)
    require_dir(gt_dir, "COCO-Stuff-10k labels", fix)
    set_metadata_roots(name, image_dir, gt_dir)
    return load_sem_seg(gt_dir, image_dir, gt_ext="png", image_ext="jpg")


def register_all_coco_stuff() -> None:
    """Register ``coco_2017_{train,test}_stuff_sem_seg`` (164k) and ``coco_stuff_10k_{train,test}_sem_seg``
    (10k, also as ``coco_2017_{train,test}_stuff_10k_sem_seg``); nothing is read. Metadata includes
    ``stuff_dataset_id_to_contiguous_id`` (COCO id -> label)."""
    common = dict(
        stuff_classes=[n for _, n, _ in COCO_STUFF_CATEGORIES],
        stuff_colors=[c for _, _, c in COCO_STUFF_CATEGORIES],
        ignore_label=IGNORE_LABEL,
        stuff_dataset_id_to_contiguous_id={cid: i for i, (cid, _, _) in enumerate(COCO_STUFF_CATEGORIES)},
    )
    for name, split in _SPLITS.items():
        image_dir, gt_dir = _dirs(split)
        register_sem_seg(name, lambda name=name: load_coco_stuff_sem_seg(name), image_root=image_dir,
                         sem_seg_root=gt_dir, **common)
    for name, split in _SPLITS_10K.items():
        image_dir, gt_dir = _dirs_10k(split)
        register_sem_seg(name, lambda name=name: load_coco_stuff_10k_sem_seg(name), image_root=image_dir,
                         sem_seg_root=gt_dir, **common)

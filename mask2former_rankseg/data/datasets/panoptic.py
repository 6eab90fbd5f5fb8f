"""COCO-panoptic-format datasets: COCO panoptic and ADE20K panoptic (categories, metadata, loaders).

Layouts under ``$DETECTRON2_DATASETS`` (see datasets/README.md)::

    coco/{train,val}2017/*.jpg
    coco/panoptic_{train,val}2017/*.png                # RGB-encoded segment ids
    coco/annotations/panoptic_{train,val}2017.json
    coco/annotations/instances_{train,val}2017.json
    coco/panoptic_semseg_{train,val}2017/*.png         # datasets/prepare_coco_semantic_annos_from_panoptic_annos.py

    ADEChallengeData2016/images/{training,validation}/*.jpg
    ADEChallengeData2016/ade20k_panoptic_{train,val}/*.png   # datasets/prepare_ade20k_pan_seg.py
    ADEChallengeData2016/ade20k_panoptic_{train,val}.json
    ADEChallengeData2016/annotations_detectron2/{training,validation}/*.png
    ADEChallengeData2016/ade20k_instance_{train,val}.json   # datasets/prepare_ade20k_ins_seg.py

Dataset dicts: ``file_name``, ``image_id``, ``pan_seg_file_name``, ``sem_seg_file_name`` (when the split has
semantic maps) and ``segments_info`` (``id``, ``category_id`` contiguous, ``isthing``, ``iscrowd``, ``area``,
``bbox``). Metadata uses upstream's names (``panoptic_root``, ``panoptic_json``, ``image_root``, ``json_file``,
``thing_dataset_id_to_contiguous_id``, ``stuff_dataset_id_to_contiguous_id``, ``thing_classes``,
``stuff_classes``, ``ignore_label``, ``label_divisor``); contiguous ids index the full category list (things
and stuff), so ``stuff_*`` covers every category, as Mask2Former does.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ...constants import IGNORE_LABEL
from ..catalog import DatasetCatalog, MetadataCatalog
from .sem_seg import dataset_root, update_metadata

logger = logging.getLogger(__name__)

__all__ = [
    "ADE20K_PANOPTIC_CATEGORIES",
    "COCO_PANOPTIC_CATEGORIES",
    "load_coco_panoptic_json",
    "panoptic_metadata",
    "register_all_panoptic",
    "register_panoptic_dataset",
]

Category = Tuple[int, str, int, Tuple[int, int, int]]
"""(dataset id, name, isthing, RGB colour)."""

# COCO panoptic's 133 categories (80 things, 53 stuff) in detectron2's order, with its colours.
COCO_PANOPTIC_CATEGORIES: Tuple[Category, ...] = (
    (1, 'person', 1, (220, 20, 60)),
    (2, 'bicycle', 1, (119, 11, 32)),
    (3, 'car', 1, (0, 0, 142)),
    (4, 'motorcycle', 1, (0, 0, 230)),
    (5, 'airplane', 1, (106, 0, 228)),
    (6, 'bus', 1, (0, 60, 100)),
    (7, 'train', 1, (0, 80, 100)),
    (8, 'truck', 1, (0, 0, 70)),
    (9, 'boat', 1, (0, 0, 192)),
    (10, 'traffic light', 1, (250, 170, 30)),
    (11, 'fire hydrant', 1, (100, 170, 30)),
    (13, 'stop sign', 1, (220, 220, 0)),
    (14, 'parking meter', 1, (175, 116, 175)),
    (15, 'bench', 1, (250, 0, 30)),
    (16, 'bird', 1, (165, 42, 42)),
    (17, 'cat', 1, (255, 77, 255)),
    (18, 'dog', 1, (0, 226, 252)),
    (19, 'horse', 1, (182, 182, 255)),
    (20, 'sheep', 1, (0, 82, 0)),
    (21, 'cow', 1, (120, 166, 157)),
    (22, 'elephant', 1, (110, 76, 0)),
    (23, 'bear', 1, (174, 57, 255)),
    (24, 'zebra', 1, (199, 100, 0)),
    (25, 'giraffe', 1, (72, 0, 118)),
    (27, 'backpack', 1, (255, 179, 240)),
    (28, 'umbrella', 1, (0, 125, 92)),
    (31, 'handbag', 1, (209, 0, 151)),
    (32, 'tie', 1, (188, 208, 182)),
    (33, 'suitcase', 1, (0, 220, 176)),
    (34, 'frisbee', 1, (255, 99, 164)),
    (35, 'skis', 1, (92, 0, 73)),
    (36, 'snowboard', 1, (133, 129, 255)),
    (37, 'sports ball', 1, (78, 180, 255)),
    (38, 'kite', 1, (0, 228, 0)),
    (39, 'baseball bat', 1, (174, 255, 243)),
    (40, 'baseball glove', 1, (45, 89, 255)),
    (41, 'skateboard', 1, (134, 134, 103)),
    (42, 'surfboard', 1, (145, 148, 174)),
    (43, 'tennis racket', 1, (255, 208, 186)),
    (44, 'bottle', 1, (197, 226, 255)),
    (46, 'wine glass', 1, (171, 134, 1)),
    (47, 'cup', 1, (109, 63, 54)),
    (48, 'fork', 1, (207, 138, 255)),
    (49, 'knife', 1, (151, 0, 95)),
    (50, 'spoon', 1, (9, 80, 61)),
    (51, 'bowl', 1, (84, 105, 51)),
    (52, 'banana', 1, (74, 65, 105)),
    (53, 'apple', 1, (166, 196, 102)),
    (54, 'sandwich', 1, (208, 195, 210)),
    (55, 'orange', 1, (255, 109, 65)),
    (56, 'broccoli', 1, (0, 143, 149)),
    (57, 'carrot', 1, (179, 0, 194)),
    (58, 'hot dog', 1, (209, 99, 106)),
    (59, 'pizza', 1, (5, 121, 0)),
    (60, 'donut', 1, (227, 255, 205)),
    (61, 'cake', 1, (147, 186, 208)),
    (62, 'chair', 1, (153, 69, 1)),
    (63, 'couch', 1, (3, 95, 161)),
    (64, 'potted plant', 1, (163, 255, 0)),
    (65, 'bed', 1, (119, 0, 170)),
    (67, 'dining table', 1, (0, 182, 199)),
    (70, 'toilet', 1, (0, 165, 120)),
    (72, 'tv', 1, (183, 130, 88)),
    (73, 'laptop', 1, (95, 32, 0)),
    (74, 'mouse', 1, (130, 114, 135)),
    (75, 'remote', 1, (110, 129, 133)),
    (76, 'keyboard', 1, (166, 74, 118)),
    (77, 'cell phone', 1, (219, 142, 185)),
    (78, 'microwave', 1, (79, 210, 114)),
    (79, 'oven', 1, (178, 90, 62)),
    (80, 'toaster', 1, (65, 70, 15)),
    (81, 'sink', 1, (127, 167, 115)),
    (82, 'refrigerator', 1, (59, 105, 106)),
    (84, 'book', 1, (142, 108, 45)),
    (85, 'clock', 1, (196, 172, 0)),
    (86, 'vase', 1, (95, 54, 80)),
    (87, 'scissors', 1, (128, 76, 255)),
    (88, 'teddy bear', 1, (201, 57, 1)),
    (89, 'hair drier', 1, (246, 0, 122)),
    (90, 'toothbrush', 1, (191, 162, 208)),
    (92, 'banner', 0, (255, 255, 128)),
    (93, 'blanket', 0, (147, 211, 203)),
    (95, 'bridge', 0, (150, 100, 100)),
    (100, 'cardboard', 0, (168, 171, 172)),
    (107, 'counter', 0, (146, 112, 198)),
    (109, 'curtain', 0, (210, 170, 100)),
    (112, 'door-stuff', 0, (92, 136, 89)),
    (118, 'floor-wood', 0, (218, 88, 184)),
    (119, 'flower', 0, (241, 129, 0)),
    (122, 'fruit', 0, (217, 17, 255)),
    (125, 'gravel', 0, (124, 74, 181)),
    (128, 'house', 0, (70, 70, 70)),
    (130, 'light', 0, (255, 228, 255)),
    (133, 'mirror-stuff', 0, (154, 208, 0)),
    (138, 'net', 0, (193, 0, 92)),
    (141, 'pillow', 0, (76, 91, 113)),
    (144, 'platform', 0, (255, 180, 195)),
    (145, 'playingfield', 0, (106, 154, 176)),
    (147, 'railroad', 0, (230, 150, 140)),
    (148, 'river', 0, (60, 143, 255)),
    (149, 'road', 0, (128, 64, 128)),
    (151, 'roof', 0, (92, 82, 55)),
    (154, 'sand', 0, (254, 212, 124)),
    (155, 'sea', 0, (73, 77, 174)),
    (156, 'shelf', 0, (255, 160, 98)),
    (159, 'snow', 0, (255, 255, 255)),
    (161, 'stairs', 0, (104, 84, 109)),
    (166, 'tent', 0, (169, 164, 131)),
    (168, 'towel', 0, (225, 199, 255)),
    (171, 'wall-brick', 0, (137, 54, 74)),
    (175, 'wall-stone', 0, (135, 158, 223)),
    (176, 'wall-tile', 0, (7, 246, 231)),
    (177, 'wall-wood', 0, (107, 255, 200)),
    (178, 'water-other', 0, (58, 41, 149)),
    (180, 'window-blind', 0, (183, 121, 142)),
    (181, 'window-other', 0, (255, 73, 97)),
    (184, 'tree-merged', 0, (107, 142, 35)),
    (185, 'fence-merged', 0, (190, 153, 153)),
    (186, 'ceiling-merged', 0, (146, 139, 141)),
    (187, 'sky-other-merged', 0, (70, 130, 180)),
    (188, 'cabinet-merged', 0, (134, 199, 156)),
    (189, 'table-merged', 0, (209, 226, 140)),
    (190, 'floor-other-merged', 0, (96, 36, 108)),
    (191, 'pavement-merged', 0, (96, 96, 96)),
    (192, 'mountain-merged', 0, (64, 170, 64)),
    (193, 'grass-merged', 0, (152, 251, 152)),
    (194, 'dirt-merged', 0, (208, 229, 228)),
    (195, 'paper-merged', 0, (206, 186, 171)),
    (196, 'food-other-merged', 0, (152, 161, 64)),
    (197, 'building-other-merged', 0, (116, 112, 0)),
    (198, 'rock-merged', 0, (0, 114, 143)),
    (199, 'wall-other-merged', 0, (102, 102, 156)),
    (200, 'rug-merged', 0, (250, 141, 255)),
)

# ADE20K-150 panoptic categories (100 things, 50 stuff) as Mask2Former registers them; ids are the semantic
# label ids 0..149.
ADE20K_PANOPTIC_CATEGORIES: Tuple[Category, ...] = (
    (0, 'wall', 0, (120, 120, 120)),
    (1, 'building', 0, (180, 120, 120)),
    (2, 'sky', 0, (6, 230, 230)),
    (3, 'floor', 0, (80, 50, 50)),
    (4, 'tree', 0, (4, 200, 3)),
    (5, 'ceiling', 0, (120, 120, 80)),
    (6, 'road, route', 0, (140, 140, 140)),
    (7, 'bed', 1, (204, 5, 255)),
    (8, 'window ', 1, (230, 230, 230)),
    (9, 'grass', 0, (4, 250, 7)),
    (10, 'cabinet', 1, (224, 5, 255)),
    (11, 'sidewalk, pavement', 0, (235, 255, 7)),
    (12, 'person', 1, (150, 5, 61)),
    (13, 'earth, ground', 0, (120, 120, 70)),
    (14, 'door', 1, (8, 255, 51)),
    (15, 'table', 1, (255, 6, 82)),
    (16, 'mountain, mount', 0, (143, 255, 140)),
    (17, 'plant', 0, (204, 255, 4)),
    (18, 'curtain', 1, (255, 51, 7)),
    (19, 'chair', 1, (204, 70, 3)),
    (20, 'car', 1, (0, 102, 200)),
    (21, 'water', 0, (61, 230, 250)),
    (22, 'painting, picture', 1, (255, 6, 51)),
    (23, 'sofa', 1, (11, 102, 255)),
    (24, 'shelf', 1, (255, 7, 71)),
    (25, 'house', 0, (255, 9, 224)),
    (26, 'sea', 0, (9, 7, 230)),
    (27, 'mirror', 1, (220, 220, 220)),
    (28, 'rug', 0, (255, 9, 92)),
    (29, 'field', 0, (112, 9, 255)),
    (30, 'armchair', 1, (8, 255, 214)),
    (31, 'seat', 1, (7, 255, 224)),
    (32, 'fence', 1, (255, 184, 6)),
    (33, 'desk', 1, (10, 255, 71)),
    (34, 'rock, stone', 0, (255, 41, 10)),
    (35, 'wardrobe, closet, press', 1, (7, 255, 255)),
    (36, 'lamp', 1, (224, 255, 8)),
    (37, 'tub', 1, (102, 8, 255)),
    (38, 'rail', 1, (255, 61, 6)),
    (39, 'cushion', 1, (255, 194, 7)),
    (40, 'base, pedestal, stand', 0, (255, 122, 8)),
    (41, 'box', 1, (0, 255, 20)),
    (42, 'column, pillar', 1, (255, 8, 41)),
    (43, 'signboard, sign', 1, (255, 5, 153)),
    (44, 'chest of drawers, chest, bureau, dresser', 1, (6, 51, 255)),
    (45, 'counter', 1, (235, 12, 255)),
    (46, 'sand', 0, (160, 150, 20)),
    (47, 'sink', 1, (0, 163, 255)),
    (48, 'skyscraper', 0, (140, 140, 140)),
    (49, 'fireplace', 1, (250, 10, 15)),
    (50, 'refrigerator, icebox', 1, (20, 255, 0)),
    (51, 'grandstand, covered stand', 0, (31, 255, 0)),
    (52, 'path', 0, (255, 31, 0)),
    (53, 'stairs', 1, (255, 224, 0)),
    (54, 'runway', 0, (153, 255, 0)),
    (55, 'case, display case, showcase, vitrine', 1, (0, 0, 255)),
    (56, 'pool table, billiard table, snooker table', 1, (255, 71, 0)),
    (57, 'pillow', 1, (0, 235, 255)),
    (58, 'screen door, screen', 1, (0, 173, 255)),
    (59, 'stairway, staircase', 0, (31, 0, 255)),
    (60, 'river', 0, (11, 200, 200)),
    (61, 'bridge, span', 0, (255, 82, 0)),
    (62, 'bookcase', 1, (0, 255, 245)),
    (63, 'blind, screen', 0, (0, 61, 255)),
    (64, 'coffee table', 1, (0, 255, 112)),
    (65, 'toilet, can, commode, crapper, pot, potty, stool, throne', 1, (0, 255, 133)),
    (66, 'flower', 1, (255, 0, 0)),
    (67, 'book', 1, (255, 163, 0)),
    (68, 'hill', 0, (255, 102, 0)),
    (69, 'bench', 1, (194, 255, 0)),
    (70, 'countertop', 1, (0, 143, 255)),
    (71, 'stove', 1, (51, 255, 0)),
    (72, 'palm, palm tree', 1, (0, 82, 255)),
    (73, 'kitchen island', 1, (0, 255, 41)),
    (74, 'computer', 1, (0, 255, 173)),
    (75, 'swivel chair', 1, (10, 0, 255)),
    (76, 'boat', 1, (173, 255, 0)),
    (77, 'bar', 0, (0, 255, 153)),
    (78, 'arcade machine', 1, (255, 92, 0)),
    (79, 'hovel, hut, hutch, shack, shanty', 0, (255, 0, 255)),
    (80, 'bus', 1, (255, 0, 245)),
    (81, 'towel', 1, (255, 0, 102)),
    (82, 'light', 1, (255, 173, 0)),
    (83, 'truck', 1, (255, 0, 20)),
    (84, 'tower', 0, (255, 184, 184)),
    (85, 'chandelier', 1, (0, 31, 255)),
    (86, 'awning, sunshade, sunblind', 1, (0, 255, 61)),
    (87, 'street lamp', 1, (0, 71, 255)),
    (88, 'booth', 1, (255, 0, 204)),
    (89, 'tv', 1, (0, 255, 194)),
    (90, 'plane', 1, (0, 255, 82)),
    (91, 'dirt track', 0, (0, 10, 255)),
    (92, 'clothes', 1, (0, 112, 255)),
    (93, 'pole', 1, (51, 0, 255)),
    (94, 'land, ground, soil', 0, (0, 194, 255)),
    (95, 'bannister, banister, balustrade, balusters, handrail', 1, (0, 122, 255)),
    (96, 'escalator, moving staircase, moving stairway', 0, (0, 255, 163)),
    (97, 'ottoman, pouf, pouffe, puff, hassock', 1, (255, 153, 0)),
    (98, 'bottle', 1, (0, 255, 10)),
    (99, 'buffet, counter, sideboard', 0, (255, 112, 0)),
    (100, 'poster, posting, placard, notice, bill, card', 0, (143, 255, 0)),
    (101, 'stage', 0, (82, 0, 255)),
    (102, 'van', 1, (163, 255, 0)),
    (103, 'ship', 1, (255, 235, 0)),
    (104, 'fountain', 1, (8, 184, 170)),
    (105, 'conveyer belt, conveyor belt, conveyer, conveyor, transporter', 0, (133, 0, 255)),
    (106, 'canopy', 0, (0, 255, 92)),
    (107, 'washer, automatic washer, washing machine', 1, (184, 0, 255)),
    (108, 'plaything, toy', 1, (255, 0, 31)),
    (109, 'pool', 0, (0, 184, 255)),
    (110, 'stool', 1, (0, 214, 255)),
    (111, 'barrel, cask', 1, (255, 0, 112)),
    (112, 'basket, handbasket', 1, (92, 255, 0)),
    (113, 'falls', 0, (0, 224, 255)),
    (114, 'tent', 0, (112, 224, 255)),
    (115, 'bag', 1, (70, 184, 160)),
    (116, 'minibike, motorbike', 1, (163, 0, 255)),
    (117, 'cradle', 0, (153, 0, 255)),
    (118, 'oven', 1, (71, 255, 0)),
    (119, 'ball', 1, (255, 0, 163)),
    (120, 'food, solid food', 1, (255, 204, 0)),
    (121, 'step, stair', 1, (255, 0, 143)),
    (122, 'tank, storage tank', 0, (0, 255, 235)),
    (123, 'trade name', 1, (133, 255, 0)),
    (124, 'microwave', 1, (255, 0, 235)),
    (125, 'pot', 1, (245, 0, 255)),
    (126, 'animal', 1, (255, 0, 122)),
    (127, 'bicycle', 1, (255, 245, 0)),
    (128, 'lake', 0, (10, 190, 212)),
    (129, 'dishwasher', 1, (214, 255, 0)),
    (130, 'screen', 1, (0, 204, 255)),
    (131, 'blanket, cover', 0, (20, 0, 255)),
    (132, 'sculpture', 1, (255, 255, 0)),
    (133, 'hood, exhaust hood', 1, (0, 153, 255)),
    (134, 'sconce', 1, (0, 41, 255)),
    (135, 'vase', 1, (0, 255, 204)),
    (136, 'traffic light', 1, (41, 0, 255)),
    (137, 'tray', 1, (41, 255, 0)),
    (138, 'trash can', 1, (173, 0, 255)),
    (139, 'fan', 1, (0, 245, 255)),
    (140, 'pier', 0, (71, 0, 255)),
    (141, 'crt screen', 0, (122, 0, 255)),
    (142, 'plate', 1, (0, 255, 184)),
    (143, 'monitor', 1, (0, 92, 255)),
    (144, 'bulletin board', 1, (184, 255, 0)),
    (145, 'shower', 0, (0, 133, 255)),
    (146, 'radiator', 1, (255, 214, 0)),
    (147, 'glass, drinking glass', 1, (25, 194, 194)),
    (148, 'clock', 1, (102, 255, 0)),
    (149, 'flag', 1, (92, 0, 255)),
)


def panoptic_metadata(categories: Sequence[Category]) -> Dict[str, Any]:
    """Class names, colours and dataset-id -> contiguous-id maps (contiguous = position in ``categories``)."""
    return {
        "thing_classes": [name for _, name, isthing, _ in categories if isthing],
        "thing_colors": [list(color) for _, _, isthing, color in categories if isthing],
        "stuff_classes": [name for _, name, _, _ in categories],
        "stuff_colors": [list(color) for _, _, _, color in categories],
        "thing_dataset_id_to_contiguous_id": {cid: i for i, (cid, _, isthing, _) in enumerate(categories) if isthing},
        "stuff_dataset_id_to_contiguous_id": {cid: i for i, (cid, _, _, _) in enumerate(categories)},
    }


def load_coco_panoptic_json(json_file: str | Path, image_dir: str | Path, gt_dir: str | Path,
                            semseg_dir: Optional[str | Path], meta: Dict[str, Any], image_ext: str = "jpg"
                            ) -> List[Dict]:
    """Read a COCO panoptic JSON into dataset dicts (category ids made contiguous, ``isthing`` set); the image
    of annotation ``x.png`` is ``image_dir/x.<image_ext>``.

    Raises:
        FileNotFoundError: the JSON, or an image / PNG it references (both named), does not exist.
        ValueError: a segment's category id is not in ``meta``.
    """
    json_file = Path(json_file)
    if not json_file.is_file():
        raise FileNotFoundError(f"Panoptic annotations {json_file} not found; see datasets/README.md.")
    data = json.loads(json_file.read_text())
    things = meta["thing_dataset_id_to_contiguous_id"]
    stuff = meta["stuff_dataset_id_to_contiguous_id"]
    dicts = []
    for ann in data.get("annotations", []):
        stem = Path(ann["file_name"]).stem
        record = {
            "file_name": str(Path(image_dir) / f"{stem}.{image_ext}"),
            "image_id": ann["image_id"],
            "pan_seg_file_name": str(Path(gt_dir) / ann["file_name"]),
        }
        if semseg_dir is not None:
            record["sem_seg_file_name"] = str(Path(semseg_dir) / ann["file_name"])
        for key in ("file_name", "pan_seg_file_name", "sem_seg_file_name"):
            if key in record and not Path(record[key]).is_file():
                raise FileNotFoundError(f"{json_file} references {record[key]} (image_id {ann['image_id']}), which "
                                        "does not exist.")
        segments = []
        for segment in ann["segments_info"]:
            category = segment["category_id"]
            if category not in stuff and category not in things:
                raise ValueError(f"{json_file}: segment {segment['id']} of image_id {ann['image_id']} has category "
                                 f"id {category}, which is not one of the dataset's categories.")
            isthing = category in things
            segments.append({**segment, "category_id": (things if isthing else stuff)[category], "isthing": isthing})
        record["segments_info"] = segments
        dicts.append(record)
    if not dicts:
        raise ValueError(f"{json_file} has no annotations.")
    return dicts


PanopticPaths = Tuple[Path, Path, Path, Optional[Path], Optional[Path]]
"""(image dir, panoptic PNG dir, panoptic JSON, semantic PNG dir or None, instances JSON or None)."""


def _path_metadata(paths: PanopticPaths) -> Dict[str, Optional[str]]:
    images, pan, pan_json, sem, inst = paths
    return {"image_root": str(images), "panoptic_root": str(pan), "panoptic_json": str(pan_json),
            "sem_seg_root": None if sem is None else str(sem), "json_file": None if inst is None else str(inst)}


def register_panoptic_dataset(name: str, categories: Sequence[Category],
                              paths: PanopticPaths | Callable[[], PanopticPaths],
                              evaluator_type: str = "coco_panoptic_seg", image_ext: str = "jpg",
                              initial_paths: Optional[PanopticPaths] = None) -> None:
    """Register a COCO-panoptic-format dataset under ``name`` with upstream's metadata keys.

    ``paths`` may be a function, called when the dataset is loaded (builtin datasets resolve
    ``$DETECTRON2_DATASETS`` then); the metadata's path keys are updated at that moment. Until then they
    hold ``initial_paths`` (default: ``paths`` resolved now).
    """
    meta = panoptic_metadata(categories)
    resolve = paths if callable(paths) else (lambda: paths)

    def load() -> List[Dict]:
        current = resolve()
        update_metadata(name, **_path_metadata(current))
        images, pan, pan_json, sem, _ = current
        return load_coco_panoptic_json(pan_json, images, pan, sem, meta, image_ext=image_ext)

    DatasetCatalog.register(name, load)
    MetadataCatalog.get(name).set(evaluator_type=evaluator_type, ignore_label=IGNORE_LABEL, label_divisor=1000,
                                  **_path_metadata(initial_paths or resolve()), **meta)


# name pattern: paths under the dataset root (image dir, panoptic PNGs, panoptic JSON, semantic PNGs, instances)
_COCO_SPLITS = {
    "coco_2017_{}_panoptic": ("coco/{s}2017", "coco/panoptic_{s}2017", "coco/annotations/panoptic_{s}2017.json",
                              None, "coco/annotations/instances_{s}2017.json"),
    "coco_2017_{}_panoptic_with_sem_seg": ("coco/{s}2017", "coco/panoptic_{s}2017",
                                           "coco/annotations/panoptic_{s}2017.json", "coco/panoptic_semseg_{s}2017",
                                           "coco/annotations/instances_{s}2017.json"),
}
_ADE_SPLITS = {"train": "training", "val": "validation"}


def _coco_paths(layout: Sequence[Optional[str]], split: str) -> PanopticPaths:
    root = dataset_root()
    return tuple(None if p is None else root / p.format(s=split) for p in layout)  # type: ignore[return-value]


def _ade_paths(split: str) -> PanopticPaths:
    ade = dataset_root() / "ADEChallengeData2016"
    folder = _ADE_SPLITS[split]
    return (ade / "images" / folder, ade / f"ade20k_panoptic_{split}", ade / f"ade20k_panoptic_{split}.json",
            ade / "annotations_detectron2" / folder, ade / f"ade20k_instance_{split}.json")


def register_all_panoptic() -> None:
    """Register COCO panoptic (plain and ``_with_sem_seg``) and ADE20K panoptic (cheap: nothing is read)."""
    for pattern, layout in _COCO_SPLITS.items():
        for split in ("train", "val"):
            name = pattern.format(split)
            if name not in DatasetCatalog:
                register_panoptic_dataset(name, COCO_PANOPTIC_CATEGORIES,
                                          lambda layout=layout, split=split: _coco_paths(layout, split))
    for split in _ADE_SPLITS:
        name = f"ade20k_panoptic_{split}"
        if name not in DatasetCatalog:
            register_panoptic_dataset(name, ADE20K_PANOPTIC_CATEGORIES, lambda split=split: _ade_paths(split),
                                      evaluator_type="ade20k_panoptic_seg")

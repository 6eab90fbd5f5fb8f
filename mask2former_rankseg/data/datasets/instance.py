"""COCO-instance-format datasets: ADE20K instance segmentation (100 thing classes) and COCO 2017 instance
segmentation (80 thing classes).

Layout under ``$DETECTRON2_DATASETS``::

    ADEChallengeData2016/images/{training,validation}/*.jpg
    ADEChallengeData2016/ade20k_instance_{train,val}.json    # COCO instance format
    coco/{train,val}2017/*.jpg
    coco/annotations/instances_{train,val}2017.json

Dataset dicts: ``file_name``, ``image_id``, ``height``, ``width`` and ``annotations`` (``segmentation`` as
polygons or RLE, ``category_id`` contiguous, ``iscrowd``, ``bbox``). Metadata: ``json_file``, ``image_root``,
``thing_classes``, ``thing_dataset_id_to_contiguous_id``, ``evaluator_type="coco"`` (and ``thing_colors`` for COCO).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from ..catalog import DatasetCatalog, MetadataCatalog
from .panoptic import COCO_PANOPTIC_CATEGORIES
from .sem_seg import dataset_root, update_metadata

__all__ = ["ADE20K_INSTANCE_CATEGORIES", "COCO_INSTANCE_CATEGORIES", "load_coco_instances_json",
           "register_all_instance", "register_instance_dataset"]

# ADE20K-150's 100 instance ("thing") categories: (dataset id, name), as Mask2Former registers them.
ADE20K_INSTANCE_CATEGORIES: Tuple[Tuple[int, str], ...] = (
    (7, 'bed'), (8, 'windowpane'), (10, 'cabinet'), (12, 'person'), (14, 'door'), (15, 'table'), (18, 'curtain'),
    (19, 'chair'), (20, 'car'), (22, 'painting'), (23, 'sofa'), (24, 'shelf'), (27, 'mirror'), (30, 'armchair'),
    (31, 'seat'), (32, 'fence'), (33, 'desk'), (35, 'wardrobe'), (36, 'lamp'), (37, 'bathtub'), (38, 'railing'),
    (39, 'cushion'), (41, 'box'), (42, 'column'), (43, 'signboard'), (44, 'chest of drawers'), (45, 'counter'),
    (47, 'sink'), (49, 'fireplace'), (50, 'refrigerator'), (53, 'stairs'), (55, 'case'), (56, 'pool table'),
    (57, 'pillow'), (58, 'screen door'), (62, 'bookcase'), (64, 'coffee table'), (65, 'toilet'), (66, 'flower'),
    (67, 'book'), (69, 'bench'), (70, 'countertop'), (71, 'stove'), (72, 'palm'), (73, 'kitchen island'),
    (74, 'computer'), (75, 'swivel chair'), (76, 'boat'), (78, 'arcade machine'), (80, 'bus'), (81, 'towel'),
    (82, 'light'), (83, 'truck'), (85, 'chandelier'), (86, 'awning'), (87, 'streetlight'), (88, 'booth'),
    (89, 'television receiver'), (90, 'airplane'), (92, 'apparel'), (93, 'pole'), (95, 'bannister'), (97, 'ottoman'),
    (98, 'bottle'), (102, 'van'), (103, 'ship'), (104, 'fountain'), (107, 'washer'), (108, 'plaything'),
    (110, 'stool'), (111, 'barrel'), (112, 'basket'), (115, 'bag'), (116, 'minibike'), (118, 'oven'), (119, 'ball'),
    (120, 'food'), (121, 'step'), (123, 'trade name'), (124, 'microwave'), (125, 'pot'), (126, 'animal'),
    (127, 'bicycle'), (129, 'dishwasher'), (130, 'screen'), (132, 'sculpture'), (133, 'hood'), (134, 'sconce'),
    (135, 'vase'), (136, 'traffic light'), (137, 'tray'), (138, 'ashcan'), (139, 'fan'), (142, 'plate'),
    (143, 'monitor'), (144, 'bulletin board'), (146, 'radiator'), (147, 'glass'), (148, 'clock'), (149, 'flag'),
)

COCO_INSTANCE_CATEGORIES: Tuple[Tuple[int, str], ...] = tuple(
    (cid, name) for cid, name, isthing, _ in COCO_PANOPTIC_CATEGORIES if isthing)
"""COCO's 80 thing categories (dataset id, name), in detectron2's order (contiguous id = position)."""
_COCO_THING_COLORS = [list(color) for _, _, isthing, color in COCO_PANOPTIC_CATEGORIES if isthing]


def load_coco_instances_json(json_file: str | Path, image_root: str | Path,
                             thing_dataset_id_to_contiguous_id: Mapping[int, int]) -> List[Dict]:
    """Read a COCO instances JSON into dataset dicts with contiguous category ids.

    Raises:
        FileNotFoundError: the JSON, or an image it references (both named), does not exist.
        ValueError: an annotation has a category id outside the metadata, or no segmentation.
    """
    json_file = Path(json_file)
    if not json_file.is_file():
        raise FileNotFoundError(f"Instance annotations {json_file} not found; see datasets/README.md.")
    data = json.loads(json_file.read_text())
    per_image: Dict[int, List[Dict]] = {}
    for ann in data.get("annotations", []):
        if ann["category_id"] not in thing_dataset_id_to_contiguous_id:
            raise ValueError(f"{json_file}: annotation {ann.get('id')} has category id {ann['category_id']}, which is "
                             "not one of the dataset's thing categories.")
        if "segmentation" not in ann:
            raise ValueError(f"{json_file}: annotation {ann.get('id')} has no 'segmentation'.")
        per_image.setdefault(ann["image_id"], []).append({
            "segmentation": ann["segmentation"], "iscrowd": int(ann.get("iscrowd", 0)), "bbox": ann.get("bbox"),
            "category_id": thing_dataset_id_to_contiguous_id[ann["category_id"]],
        })
    dicts = []
    for image in data.get("images", []):
        path = Path(image_root) / image["file_name"]
        if not path.is_file():
            raise FileNotFoundError(f"{json_file} references {path} (image id {image['id']}), which does not exist.")
        dicts.append({"file_name": str(path), "image_id": image["id"], "height": image["height"],
                      "width": image["width"], "annotations": per_image.get(image["id"], [])})
    if not dicts:
        raise ValueError(f"{json_file} lists no images.")
    return dicts


def register_instance_dataset(name: str, categories: Sequence[Tuple[int, str]],
                              paths: Callable[[], Tuple[Path, Path]],
                              thing_colors: Optional[Sequence[Sequence[int]]] = None) -> None:
    """Register a COCO-instance-format dataset; ``paths()`` gives (image root, JSON) when loaded."""
    mapping = {cid: i for i, (cid, _) in enumerate(categories)}

    def load() -> List[Dict]:
        image_root, json_file = paths()
        update_metadata(name, image_root=str(image_root), json_file=str(json_file))
        return load_coco_instances_json(json_file, image_root, mapping)

    image_root, json_file = paths()
    DatasetCatalog.register(name, load)
    MetadataCatalog.get(name).set(image_root=str(image_root), json_file=str(json_file), evaluator_type="coco",
                                  thing_classes=[n for _, n in categories], thing_dataset_id_to_contiguous_id=mapping)
    if thing_colors is not None:
        MetadataCatalog.get(name).set(thing_colors=[list(c) for c in thing_colors])


def _ade_paths(split: str) -> Tuple[Path, Path]:
    ade = dataset_root() / "ADEChallengeData2016"
    folder = {"train": "training", "val": "validation"}[split]
    return ade / "images" / folder, ade / f"ade20k_instance_{split}.json"


def _coco_paths(split: str) -> Tuple[Path, Path]:
    coco = dataset_root() / "coco"
    return coco / f"{split}2017", coco / "annotations" / f"instances_{split}2017.json"


def register_all_instance() -> None:
    """Register ``ade20k_instance_{train,val}`` and ``coco_2017_{train,val}`` (cheap: nothing is read)."""
    for split in ("train", "val"):
        name = f"ade20k_instance_{split}"
        if name not in DatasetCatalog:
            register_instance_dataset(name, ADE20K_INSTANCE_CATEGORIES, lambda split=split: _ade_paths(split))
        name = f"coco_2017_{split}"
        if name not in DatasetCatalog:
            register_instance_dataset(name, COCO_INSTANCE_CATEGORIES, lambda split=split: _coco_paths(split),
                                      thing_colors=_COCO_THING_COLORS)

#!/usr/bin/env python3
"""Build COCO+LVIS semantic label maps (1,284 classes) from LVIS v1 and COCO-Stuff.

For every image of ``coco/annotations/lvis_v1_{train,val}.json`` (its COCO image is named by ``coco_url``:
``train2017/`` or ``val2017/``):

1. start from the COCO-Stuff map ``coco/stuffthingmaps/<folder>/<stem>.png``: each of the 91 stuff classes
   becomes its COCO+LVIS label (the 10 whose names are LVIS categories take the LVIS label); COCO thing
   pixels, "other" and unlabelled pixels become 65535 (ignore);
2. paint the image's LVIS instance masks over it with label ``category_id - 1``, largest area first, so
   smaller objects lying on larger ones stay visible.

Writes ``coco/coco_lvis_detectron2/{train,val}/<stem>.png`` (uint16: 0..1283, 65535 = ignore) through a
temporary file and a rename. See datasets/README.md for what RankSeg states and what is our choice.

Usage::

    python datasets/prepare_coco_lvis_sem_seg.py             # root: $DETECTRON2_DATASETS or ./datasets
    python datasets/prepare_coco_lvis_sem_seg.py --root /data/datasets --splits val
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import tqdm
from PIL import Image

from mask2former_rankseg.data.datasets.coco_lvis import LVIS_V1_CATEGORY_NAMES, coco_lvis_stuff_lut
from mask2former_rankseg.data.label_maps import remap_labels, save_label_map
from mask2former_rankseg.data.mappers.instance import segmentation_to_mask
from mask2former_rankseg.data.prepare_cli import prepare_argument_parser, run_and_report

SPLITS = ("val", "train")
COCO_IMAGE_DIRS = ("train2017", "val2017")


def image_folder_and_stem(image: Mapping) -> tuple:
    """("train2017" | "val2017", file stem) of an LVIS image entry (from ``coco_url``, else ``file_name``)."""
    url = str(image.get("coco_url") or image.get("file_name") or "")
    parts = url.replace("\\", "/").split("/")
    if len(parts) < 2 or parts[-2] not in COCO_IMAGE_DIRS:
        raise ValueError(f"LVIS image {image.get('id')} has coco_url {url!r}, which names no COCO 2017 folder.")
    return parts[-2], Path(parts[-1]).stem


def coco_lvis_labels(stuff_map: np.ndarray, annotations: Sequence[Mapping], stuff_lut: np.ndarray,
                     source: str) -> np.ndarray:
    """[H, W] uint16 COCO+LVIS labels from a raw COCO-Stuff map and the image's LVIS annotations."""
    labels = remap_labels(stuff_map, stuff_lut, np.uint16, source=source)
    height, width = labels.shape
    for ann in sorted(annotations, key=lambda a: -float(a.get("area", 0.0))):
        cid = int(ann["category_id"])
        if not 1 <= cid <= len(LVIS_V1_CATEGORY_NAMES):
            raise ValueError(f"{source}: LVIS annotation {ann.get('id')} has category_id {cid} outside 1..1203.")
        mask = segmentation_to_mask(ann["segmentation"], height, width, source=f"{source}, annotation {ann.get('id')}")
        labels[mask.astype(bool)] = cid - 1
    return labels


def convert_split(coco_dir: Path, split: str) -> int:
    """Write the label maps of one LVIS split; returns how many."""
    json_file = coco_dir / "annotations" / f"lvis_v1_{split}.json"
    if not json_file.is_file():
        raise FileNotFoundError(f"{json_file} not found. Download lvis_v1_{split}.json.zip from "
                                "https://www.lvisdataset.org/dataset into coco/annotations (see datasets/README.md).")
    try:
        data = json.loads(json_file.read_text())
        images = data["images"]
        per_image: Dict[int, List[Mapping]] = defaultdict(list)
        for ann in data["annotations"]:
            per_image[int(ann["image_id"])].append(ann)
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise ValueError(f"{json_file} is not an LVIS annotation file ({type(e).__name__}: {e}).") from e
    stuff_lut = coco_lvis_stuff_lut()
    out_dir = coco_dir / "coco_lvis_detectron2" / split
    out_dir.mkdir(parents=True, exist_ok=True)
    for image in tqdm.tqdm(images, desc=split, unit="img"):
        folder, stem = image_folder_and_stem(image)
        stuff_file = coco_dir / "stuffthingmaps" / folder / f"{stem}.png"
        if not stuff_file.is_file():
            raise FileNotFoundError(f"{json_file} lists image {folder}/{stem}.jpg, but its COCO-Stuff map "
                                    f"{stuff_file} does not exist (unzip stuffthingmaps_trainval2017.zip there).")
        with Image.open(stuff_file) as stuff:
            stuff_map = np.asarray(stuff)
        if stuff_map.shape != (int(image["height"]), int(image["width"])):
            raise ValueError(f"{stuff_file} has size {stuff_map.shape}, {json_file} says "
                             f"{(image['height'], image['width'])} for image {image['id']}.")
        labels = coco_lvis_labels(stuff_map, per_image.get(int(image["id"]), []), stuff_lut, str(stuff_file))
        save_label_map(labels, out_dir / f"{stem}.png")
    return len(images)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = prepare_argument_parser(__doc__, "coco/")
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS)
    args = parser.parse_args(argv)
    coco = Path(args.root) / "coco"
    return run_and_report(lambda: (f"{split}: wrote {convert_split(coco, split)} COCO+LVIS label maps"
                                   for split in args.splits))


if __name__ == "__main__":
    sys.exit(main())

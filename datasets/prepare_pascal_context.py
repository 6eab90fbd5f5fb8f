#!/usr/bin/env python3
"""Build Pascal-Context-59 and -60 label maps from the VOC2010 images and ``trainval_merged.json``.

Reads ``VOCdevkit/VOC2010/trainval_merged.json`` (Pascal-Context's annotations: ``images`` with
``image_id``, ``file_name``, ``height``, ``width``, ``phase`` train/val; ``annos_segmentation`` with
``image_id``, ``category_id`` and a COCO-style ``segmentation``, RLE or polygons) without the ``detail``
API: each segmentation is decoded with pycocotools and painted in file order (a later annotation overwrites
an earlier one, as ``Detail.getMask`` does). Category ids map to labels as mmsegmentation's converter maps
them (``PASCAL_CONTEXT_60_CATEGORIES``); any other id, and unannotated pixels, are background. Writes

* ``VOC2010/annotations_detectron2/pascal_context_60/{train,val}/<stem>.png``: 0 = background, 1..59;
* ``VOC2010/annotations_detectron2/pascal_context_59/{train,val}/<stem>.png``: 0..58, 255 = ignore (background).

Usage::

    python datasets/prepare_pascal_context.py          # root: $DETECTRON2_DATASETS or ./datasets
    python datasets/prepare_pascal_context.py --root /data/datasets --json /path/to/trainval_merged.json
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import tqdm

from mask2former_rankseg.constants import IGNORE_LABEL
from mask2former_rankseg.data.datasets.pascal_context import pascal_context_label_lut
from mask2former_rankseg.data.label_maps import save_label_map
from mask2former_rankseg.data.mappers.instance import segmentation_to_mask
from mask2former_rankseg.data.prepare_cli import prepare_argument_parser, run_and_report

SPLITS = ("train", "val")


def context_labels(image: Mapping, annotations: Sequence[Mapping], lut: np.ndarray, source: str) -> np.ndarray:
    """[H, W] uint8 60-class labels of one image: annotations painted in order, each with ``lut[category_id]``
    (ids beyond ``lut`` are background)."""
    height, width = int(image["height"]), int(image["width"])
    labels = np.zeros((height, width), dtype=np.uint8)
    for ann in annotations:
        cid = int(ann["category_id"])
        mask = segmentation_to_mask(ann["segmentation"], height, width, source=f"{source}, annotation {ann['id']}")
        labels[mask.astype(bool)] = lut[cid] if cid < len(lut) else 0
    return labels


def labels_59(labels_60: np.ndarray) -> np.ndarray:
    """60-class labels -> 59-class labels (background -> IGNORE_LABEL, k -> k - 1)."""
    return np.where(labels_60 == 0, IGNORE_LABEL, labels_60.astype(np.int64) - 1).astype(np.uint8)


def prepare(root: Path, json_file: Optional[Path] = None, splits: Sequence[str] = SPLITS) -> Dict[str, int]:
    """Write the label maps of ``splits``; returns the number of images per split."""
    voc = root / "VOCdevkit" / "VOC2010"
    json_file = json_file or voc / "trainval_merged.json"
    image_dir = voc / "JPEGImages"
    for path, what in ((json_file, "Pascal-Context's trainval_merged.json"), (image_dir, "VOC2010 JPEGImages")):
        if not path.exists():
            raise FileNotFoundError(f"{what} not found at {path}. Download VOCtrainval_03-May-2010.tar and "
                                    "trainval_merged.json (see datasets/README.md).")
    try:
        data = json.loads(json_file.read_text())
        images = {int(img["image_id"]): img for img in data["images"]}
        annotations: Dict[int, List[Mapping]] = defaultdict(list)
        for ann in data["annos_segmentation"]:
            if int(ann["image_id"]) not in images:
                raise ValueError(f"annotation {ann['id']} refers to image_id {ann['image_id']}, which is not in "
                                 "'images'")
            annotations[int(ann["image_id"])].append(ann)
        max_id = max([int(c["category_id"]) for c in data.get("categories", [])] + [0])
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise ValueError(f"{json_file} is not a Pascal-Context annotation file ({type(e).__name__}: {e}).") from e
    except ValueError as e:
        raise ValueError(f"{json_file}: {e}") from e
    lut = pascal_context_label_lut(max(max_id, 459))
    counts = {}
    for split in splits:
        chosen = sorted((img for img in images.values() if img.get("phase") == split), key=lambda i: i["file_name"])
        out_dirs = {n: voc / "annotations_detectron2" / f"pascal_context_{n}" / split for n in (59, 60)}
        for d in out_dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        for img in tqdm.tqdm(chosen, desc=split, unit="img"):
            if not (image_dir / img["file_name"]).is_file():
                raise FileNotFoundError(f"{json_file} lists image {img['file_name']}, which is not in {image_dir}.")
            labels = context_labels(img, annotations[int(img["image_id"])], lut, source=str(json_file))
            stem = Path(img["file_name"]).stem
            save_label_map(labels, out_dirs[60] / f"{stem}.png")
            save_label_map(labels_59(labels), out_dirs[59] / f"{stem}.png")
        counts[split] = len(chosen)
    return counts


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = prepare_argument_parser(__doc__, "VOCdevkit/")
    parser.add_argument("--json", type=Path, default=None,
                        help="trainval_merged.json (default: VOCdevkit/VOC2010/trainval_merged.json)")
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS)
    args = parser.parse_args(argv)
    return run_and_report(lambda: [f"{split}: wrote {count} Pascal-Context-59 and -60 label maps"
                                   for split, count in prepare(Path(args.root), args.json, args.splits).items()])


if __name__ == "__main__":
    sys.exit(main())

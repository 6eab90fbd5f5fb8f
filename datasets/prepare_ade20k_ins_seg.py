#!/usr/bin/env python3
"""Build ADE20K-150 instance annotations (COCO instance format, 100 thing classes) from the instance PNGs.

Reads ``ADEChallengeData2016/{images,annotations_instance}/{training,validation}`` and writes
``ADEChallengeData2016/ade20k_instance_{train,val}.json``: one RLE annotation per instance, category ids
the 0-based semantic ids of the thing classes (``ADE20K_INSTANCE_CATEGORIES``), as upstream. The JSON is
written to a temporary name and renamed.

Usage::

    python datasets/prepare_ade20k_ins_seg.py            # root: $DETECTRON2_DATASETS or ./datasets
    python datasets/prepare_ade20k_ins_seg.py --root /data/datasets --splits val
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import tqdm
from PIL import Image
from pycocotools import mask as mask_utils

from mask2former_rankseg.data.datasets.ade20k_instances import ade20k_instances, mask_bbox
from mask2former_rankseg.data.datasets.instance import ADE20K_INSTANCE_CATEGORIES
from mask2former_rankseg.data.prepare_cli import prepare_argument_parser, run_and_report
from mask2former_rankseg.utils.file_io import atomic_write

SPLITS = {"train": "training", "val": "validation"}


def convert_split(ade: Path, split: str) -> int:
    """Write one split's instance JSON; returns the number of annotations."""
    folder = SPLITS[split]
    images = sorted((ade / "images" / folder).glob("*.jpg"))
    if not images:
        raise FileNotFoundError(f"No images in {ade / 'images' / folder}; unzip ADEChallengeData2016 first.")
    json_images, annotations = [], []
    for image_path in tqdm.tqdm(images, desc=split, unit="img"):
        stem = image_path.stem
        png = ade / "annotations_instance" / folder / f"{stem}.png"
        if not png.is_file():
            raise FileNotFoundError(f"{png} not found (see datasets/README.md for the ADE20K layout).")
        with Image.open(png) as image:
            instance = np.asarray(image)
        json_images.append({"id": stem, "file_name": image_path.name, "width": int(instance.shape[1]),
                            "height": int(instance.shape[0])})
        for category, mask in ade20k_instances(instance, source=str(png)):
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            rle["counts"] = rle["counts"].decode("ascii")
            annotations.append({"id": len(annotations) + 1, "image_id": stem, "category_id": int(category),
                                "iscrowd": 0, "bbox": mask_bbox(mask), "area": int(mask.sum()),
                                "segmentation": rle})
    categories = [{"id": cid, "name": name} for cid, name in ADE20K_INSTANCE_CATEGORIES]
    out = ade / f"ade20k_instance_{split}.json"
    payload = json.dumps({"images": json_images, "annotations": annotations, "categories": categories})
    atomic_write(out, lambda f: f.write(payload), mode="w")
    return len(annotations)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = prepare_argument_parser(__doc__, "ADEChallengeData2016")
    parser.add_argument("--splits", nargs="+", choices=list(SPLITS), default=list(SPLITS))
    args = parser.parse_args(argv)
    ade = Path(args.root) / "ADEChallengeData2016"
    return run_and_report(lambda: (f"{split}: {convert_split(ade, split)} instances" for split in args.splits))


if __name__ == "__main__":
    sys.exit(main())

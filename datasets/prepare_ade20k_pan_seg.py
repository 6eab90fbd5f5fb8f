#!/usr/bin/env python3
"""Build ADE20K-150 panoptic annotations (COCO panoptic format) from the semantic and instance annotations.

Reads ``ADEChallengeData2016/{images,annotations,annotations_instance}/{training,validation}`` and writes
``ADEChallengeData2016/ade20k_panoptic_{train,val}/*.png`` (RGB-encoded segment ids) and
``ADEChallengeData2016/ade20k_panoptic_{train,val}.json``. Stuff classes give one segment each, instances
one thing segment each (see ``mask2former_rankseg.data.datasets.ade20k_instances``). PNGs and the JSON are
written to temporary names and renamed.

Usage::

    python datasets/prepare_ade20k_pan_seg.py            # root: $DETECTRON2_DATASETS or ./datasets
    python datasets/prepare_ade20k_pan_seg.py --root /data/datasets --splits val
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import tqdm
from PIL import Image

from mask2former_rankseg.data.datasets.ade20k_instances import ade20k_panoptic
from mask2former_rankseg.data.datasets.panoptic import ADE20K_PANOPTIC_CATEGORIES
from mask2former_rankseg.data.prepare_cli import prepare_argument_parser, run_and_report
from mask2former_rankseg.utils.file_io import atomic_write
from mask2former_rankseg.utils.panoptic import id2rgb

SPLITS = {"train": "training", "val": "validation"}


def _read(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (see datasets/README.md for the ADE20K layout).")
    with Image.open(path) as image:
        return np.asarray(image)


def convert_split(ade: Path, split: str) -> int:
    """Write one split's panoptic PNGs and JSON; returns the number of images."""
    folder = SPLITS[split]
    images = sorted((ade / "images" / folder).glob("*.jpg"))
    if not images:
        raise FileNotFoundError(f"No images in {ade / 'images' / folder}; unzip ADEChallengeData2016 first.")
    out_dir = ade / f"ade20k_panoptic_{split}"
    out_dir.mkdir(exist_ok=True)
    json_images, annotations = [], []
    for image_path in tqdm.tqdm(images, desc=split, unit="img"):
        stem = image_path.stem
        semantic = _read(ade / "annotations" / folder / f"{stem}.png")
        instance = _read(ade / "annotations_instance" / folder / f"{stem}.png")
        segments, info = ade20k_panoptic(semantic, instance, source=stem)
        height, width = semantic.shape[:2]
        atomic_write(out_dir / f"{stem}.png", lambda f, s=segments: Image.fromarray(id2rgb(s)).save(f, "PNG"))
        json_images.append({"id": stem, "file_name": image_path.name, "width": int(width), "height": int(height)})
        annotations.append({"image_id": stem, "file_name": f"{stem}.png", "segments_info": info})
    categories = [{"id": cid, "name": name, "isthing": isthing, "color": list(color)}
                  for cid, name, isthing, color in ADE20K_PANOPTIC_CATEGORIES]
    payload = json.dumps({"images": json_images, "annotations": annotations, "categories": categories})
    atomic_write(ade / f"ade20k_panoptic_{split}.json", lambda f: f.write(payload), mode="w")
    return len(images)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = prepare_argument_parser(__doc__, "ADEChallengeData2016")
    parser.add_argument("--splits", nargs="+", choices=list(SPLITS), default=list(SPLITS))
    args = parser.parse_args(argv)
    ade = Path(args.root) / "ADEChallengeData2016"
    return run_and_report(lambda: (f"{split}: {convert_split(ade, split)} images" for split in args.splits))


if __name__ == "__main__":
    sys.exit(main())

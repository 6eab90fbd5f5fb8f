#!/usr/bin/env python3
"""Convert COCO-Stuff-164k label maps to the 171 contiguous training labels.

Reads ``coco/stuffthingmaps/{train2017,val2017}/*.png`` (from ``stuffthingmaps_trainval2017.zip``: each
pixel is its COCO category id - 1, 255 = unlabelled) and writes
``coco/stuffthingmaps_detectron2/{train2017,val2017}/*.png`` (uint8: 0..170 in the order of
``COCO_STUFF_CATEGORIES``, 255 = ignore; COCO-Stuff's "other", id 183, becomes ignore). A value of an unused
COCO id is an error naming the file. Files are written under a temporary name and renamed.

Usage::

    python datasets/prepare_coco_stuff_164k_sem_seg.py            # root: $DETECTRON2_DATASETS or ./datasets
    python datasets/prepare_coco_stuff_164k_sem_seg.py --root /data/datasets --splits val2017
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import tqdm
from PIL import Image

from mask2former_rankseg.data.datasets.coco_stuff import coco_stuff_label_lut
from mask2former_rankseg.data.label_maps import remap_labels, save_label_map
from mask2former_rankseg.data.prepare_cli import prepare_argument_parser, run_and_report

SPLITS = ("val2017", "train2017")


def prepare(root: Path, splits: Sequence[str] = SPLITS) -> int:
    """Convert ``splits`` under ``root/coco``; returns the number of label maps written."""
    lut = coco_stuff_label_lut()
    total = 0
    for split in splits:
        src_dir = root / "coco" / "stuffthingmaps" / split
        if not src_dir.is_dir():
            raise FileNotFoundError(
                f"{src_dir} not found. Download stuffthingmaps_trainval2017.zip "
                "(http://calvin.inf.ed.ac.uk/wp-content/uploads/data/cocostuffdataset/stuffthingmaps_trainval2017.zip) "
                f"and unzip it into {root / 'coco' / 'stuffthingmaps'} (see datasets/README.md)."
            )
        dst_dir = root / "coco" / "stuffthingmaps_detectron2" / split
        dst_dir.mkdir(parents=True, exist_ok=True)
        files = sorted(src_dir.glob("*.png"))
        for src in tqdm.tqdm(files, desc=split, unit="img"):
            with Image.open(src) as image:
                raw = np.asarray(image)
            save_label_map(remap_labels(raw, lut, np.uint8, source=str(src)), dst_dir / src.name)
        total += len(files)
    return total


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = prepare_argument_parser(__doc__, "coco/")
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS)
    args = parser.parse_args(argv)
    root = Path(args.root)
    return run_and_report(lambda: [f"Converted {prepare(root, args.splits)} label maps into "
                                   f"{root / 'coco' / 'stuffthingmaps_detectron2'}"])


if __name__ == "__main__":
    sys.exit(main())

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

import argparse
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import tqdm
from PIL import Image

from mask2former_rankseg.data.datasets.coco_stuff import coco_stuff_label_lut
from mask2former_rankseg.data.label_maps import remap_labels, save_label_map

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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=os.path.expanduser(os.environ.get("DETECTRON2_DATASETS", "datasets")),
                        help="folder holding coco/ (default: $DETECTRON2_DATASETS or ./datasets)")
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS)
    args = parser.parse_args(argv)
    try:
        count = prepare(Path(args.root), args.splits)
    except (FileNotFoundError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"Converted {count} label maps into {Path(args.root) / 'coco' / 'stuffthingmaps_detectron2'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Convert ADE20K-150 (SceneParsing) labels to the training format.

Reads ``ADEChallengeData2016/annotations/{training,validation}/*.png`` (0 = unlabelled, 1..150 = classes)
and writes ``ADEChallengeData2016/annotations_detectron2/{training,validation}/*.png`` (uint8,
0..149 = classes, 255 = ignore). Each output file is written to a temporary name and renamed, so an
interrupted run leaves no truncated PNG.

Usage::

    python datasets/prepare_ade20k_sem_seg.py            # root: $DETECTRON2_DATASETS or ./datasets
    python datasets/prepare_ade20k_sem_seg.py --root /data/datasets
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import tqdm
from PIL import Image

from mask2former_rankseg.constants import IGNORE_LABEL
from mask2former_rankseg.data.prepare_cli import prepare_argument_parser, run_and_report
from mask2former_rankseg.utils.file_io import atomic_write

NUM_CLASSES = 150
SPLITS = ("training", "validation")


def convert_labels(raw: np.ndarray) -> np.ndarray:
    """[H, W] raw labels (0 = unlabelled, 1..150) -> [H, W] uint8 (0..149, 255 = ignore)."""
    out = np.full(raw.shape, IGNORE_LABEL, dtype=np.uint8)
    labelled = raw > 0
    out[labelled] = (raw[labelled] - 1).astype(np.uint8)
    return out


def convert_file(src: Path, dst: Path) -> None:
    """Convert one annotation PNG; errors name the file."""
    try:
        with Image.open(src) as image:
            raw = np.asarray(image)
    except (OSError, SyntaxError, ValueError) as e:
        raise RuntimeError(f"Cannot read annotation {src}: {e}") from e
    if raw.ndim != 2:
        raise ValueError(f"Annotation {src} has shape {raw.shape}; expected a single-channel label PNG.")
    if raw.size and int(raw.max()) > NUM_CLASSES:
        raise ValueError(f"Annotation {src} has label {int(raw.max())} > {NUM_CLASSES}; is it an ADE20K-150 file?")
    labels = convert_labels(raw)
    atomic_write(dst, lambda f: Image.fromarray(labels).save(f, format="PNG"))


def prepare(root: Path) -> int:
    """Convert both splits under ``root/ADEChallengeData2016``; returns the number of files written."""
    dataset_dir = root / "ADEChallengeData2016"
    total = 0
    for split in SPLITS:
        src_dir = dataset_dir / "annotations" / split
        if not src_dir.is_dir():
            raise FileNotFoundError(
                f"{src_dir} not found. Download ADEChallengeData2016.zip from http://sceneparsing.csail.mit.edu/ "
                f"and unzip it into {root} (see datasets/README.md)."
            )
        dst_dir = dataset_dir / "annotations_detectron2" / split
        dst_dir.mkdir(parents=True, exist_ok=True)
        files = sorted(src_dir.glob("*.png"))
        for src in tqdm.tqdm(files, desc=split, unit="img"):
            convert_file(src, dst_dir / src.name)
        total += len(files)
    return total


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = prepare_argument_parser(__doc__, "ADEChallengeData2016").parse_args(argv)
    root = Path(args.root)
    return run_and_report(lambda: [f"Converted {prepare(root)} annotations into "
                                   f"{root / 'ADEChallengeData2016' / 'annotations_detectron2'}"])


if __name__ == "__main__":
    sys.exit(main())

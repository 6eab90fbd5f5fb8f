#!/usr/bin/env python3
"""Derive COCO semantic label maps from the panoptic annotations (for ``*_panoptic_with_sem_seg``).

Reads ``coco/annotations/panoptic_{train,val}2017.json`` and ``coco/panoptic_{train,val}2017/*.png`` and writes
``coco/panoptic_semseg_{train,val}2017/*.png``: uint8, each segment's category as its contiguous id among
the 133 panoptic categories (0..132, things and stuff, crowd segments included, as upstream), 255 where
the panoptic PNG is void. Each output is written to a temporary name and renamed, so an interrupted run
leaves no truncated PNG.

Usage::

    python datasets/prepare_coco_semantic_annos_from_panoptic_annos.py       # root: $DETECTRON2_DATASETS
    python datasets/prepare_coco_semantic_annos_from_panoptic_annos.py --root /data/datasets --splits val2017
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import tqdm
from PIL import Image

from mask2former_rankseg.constants import IGNORE_LABEL
from mask2former_rankseg.data.datasets.panoptic import COCO_PANOPTIC_CATEGORIES
from mask2former_rankseg.data.prepare_cli import prepare_argument_parser, run_and_report
from mask2former_rankseg.utils.file_io import atomic_write
from mask2former_rankseg.utils.panoptic import rgb2id

SPLITS = ("val2017", "train2017")


def semantic_from_panoptic(segment_ids: np.ndarray, segments: Sequence[Mapping], id_map: Mapping[int, int],
                           source: str = "panoptic PNG") -> np.ndarray:
    """[H, W] segment ids -> [H, W] uint8 contiguous category ids (IGNORE_LABEL where void or unlisted)."""
    out = np.full(segment_ids.shape, IGNORE_LABEL, dtype=np.uint8)
    for segment in segments:
        if segment["category_id"] not in id_map:
            raise ValueError(f"{source}: segment {segment['id']} has unknown category id {segment['category_id']}.")
        out[segment_ids == segment["id"]] = id_map[segment["category_id"]]
    return out


def convert_split(coco_dir: Path, split: str, id_map: Mapping[int, int]) -> int:
    """Convert one split; returns the number of PNGs written."""
    json_file = coco_dir / "annotations" / f"panoptic_{split}.json"
    pan_dir = coco_dir / f"panoptic_{split}"
    if not json_file.is_file() or not pan_dir.is_dir():
        raise FileNotFoundError(f"{json_file} or {pan_dir} not found. Download COCO's panoptic annotations and "
                                "unzip the PNGs into the coco folder (see datasets/README.md).")
    out_dir = coco_dir / f"panoptic_semseg_{split}"
    out_dir.mkdir(parents=True, exist_ok=True)
    annotations: List[Dict] = json.loads(json_file.read_text())["annotations"]
    for ann in tqdm.tqdm(annotations, desc=split, unit="img"):
        src = pan_dir / ann["file_name"]
        if not src.is_file():
            raise FileNotFoundError(f"{json_file} references {src}, which does not exist.")
        with Image.open(src) as image:
            ids = rgb2id(np.asarray(image.convert("RGB")))
        dst = out_dir / ann["file_name"]
        labels = semantic_from_panoptic(ids, ann["segments_info"], id_map, str(src))
        atomic_write(dst, lambda f, labels=labels: Image.fromarray(labels).save(f, format="PNG"))
    return len(annotations)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = prepare_argument_parser(__doc__, "coco/")
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), help="default: val2017 train2017")
    args = parser.parse_args(argv)
    coco = Path(args.root) / "coco"
    id_map = {cid: i for i, (cid, _, _, _) in enumerate(COCO_PANOPTIC_CATEGORIES)}
    return run_and_report(lambda: (f"{split}: wrote {convert_split(coco, split, id_map)} semantic maps"
                                   for split in args.splits))


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Build ADE20K-Full (847 classes) images and 16-bit label maps from the ADE20K-2021 release.

Reads ``ADE20K_2021_17_01/index_ade20k.pkl`` (its ``folder`` and ``filename`` lists, as upstream's
``prepare_ade20k_full_sem_seg.py`` does; read with a restricted unpickler that admits only arrays and plain
containers) or, with ``--scan``, finds ``images/ADE/{training,validation}/**/ADE_*.jpg`` itself. For each
image, the object class of a pixel is ``R / 10 * 256 + G`` of its ``<name>_seg.png``; the 847 classes of
``ADE20K_FULL_CATEGORIES`` become labels 0..846 and everything else (0 = unlabelled, rarer objects) 65535.
An image whose shorter side exceeds 512 is resized to 512 (bilinear; labels nearest), as upstream does, and
re-encoded as JPEG; smaller images are copied unchanged. The split is ``validation`` for ``ADE_val_*`` files,
``training`` otherwise. Writes

* ``ADE20K_2021_17_01/images_detectron2/{training,validation}/<name>.jpg``
* ``ADE20K_2021_17_01/annotations_detectron2/{training,validation}/<name>.tif`` (uint16)

Usage::

    python datasets/prepare_ade20k_full_sem_seg.py          # root: $DETECTRON2_DATASETS or ./datasets
    python datasets/prepare_ade20k_full_sem_seg.py --root /data/datasets --scan
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
import tqdm
from PIL import Image

from mask2former_rankseg.data.datasets.ade20k_full import (
    ADE20K_FULL_CATEGORIES,
    ADE20K_FULL_IGNORE_LABEL,
    ADE20K_FULL_ROOT,
)
from mask2former_rankseg.data.label_maps import remap_labels, save_label_map
from mask2former_rankseg.data.prepare_cli import prepare_argument_parser, run_and_report
from mask2former_rankseg.engine.checkpoint import CheckpointError, load_plain_pickle
from mask2former_rankseg.utils.file_io import atomic_write

MAX_SHORT_SIDE = 512
MAX_OBJECT_ID = 25 * 256 + 255  # R / 10 <= 25 for 8-bit R


def object_classes(seg_rgb: np.ndarray) -> np.ndarray:
    """[H, W, 3] uint8 ``*_seg.png`` -> [H, W] int64 ADE20K object class ids (``R // 10 * 256 + G``)."""
    return (seg_rgb[..., 0].astype(np.int64) // 10) * 256 + seg_rgb[..., 1].astype(np.int64)


def label_lut() -> np.ndarray:
    """[MAX_OBJECT_ID + 1] lookup: object id -> label 0..846, or the ignore label 65535."""
    lut = np.full(MAX_OBJECT_ID + 1, ADE20K_FULL_IGNORE_LABEL, dtype=np.int64)
    for label, (object_id, _) in enumerate(ADE20K_FULL_CATEGORIES):
        lut[object_id] = label
    return lut


def resized_size(height: int, width: int, max_short: int = MAX_SHORT_SIDE) -> Optional[Tuple[int, int]]:
    """(h, w) with the shorter side ``max_short`` when it is longer than that (else None), as upstream."""
    if min(height, width) <= max_short:
        return None
    if width >= height:
        return max_short, round(width / height * max_short)
    return round(height / width * max_short), max_short


def list_images(dataset_dir: Path, scan: bool) -> List[Path]:
    """The release's images, from the index pickle or by scanning ``images/ADE``."""
    release = dataset_dir / ADE20K_FULL_ROOT
    if scan:
        images = sorted(p for p in (release / "images" / "ADE").rglob("ADE_*.jpg"))
        if not images:
            raise FileNotFoundError(f"No ADE_*.jpg images under {release / 'images' / 'ADE'}.")
        return images
    index_file = release / "index_ade20k.pkl"
    if not index_file.is_file():
        raise FileNotFoundError(f"{index_file} not found. Download ADE20K_2021_17_01 from "
                                "https://groups.csail.mit.edu/vision/datasets/ADE20K/ (or pass --scan).")
    try:
        index = load_plain_pickle(index_file)
        folders, names = list(index["folder"]), list(index["filename"])
    except (CheckpointError, KeyError, TypeError) as e:
        raise ValueError(f"Cannot read the image list of {index_file} ({e}); pass --scan to list the images "
                         "from the folders instead.") from e
    return [dataset_dir / str(folder) / str(name) for folder, name in zip(folders, names)]


def convert_image(image_file: Path, out_image: Path, out_label: Path, lut: np.ndarray) -> None:
    """Write one image (resized or copied) and its uint16 label map."""
    seg_file = image_file.with_name(image_file.stem + "_seg.png")
    if not image_file.is_file() or not seg_file.is_file():
        raise FileNotFoundError(f"{image_file} or its segmentation {seg_file} is missing.")
    with Image.open(seg_file) as seg:
        labels = remap_labels(object_classes(np.asarray(seg.convert("RGB"))), lut, np.uint16, str(seg_file))
    with Image.open(image_file) as image:
        width, height = image.size
        if (height, width) != labels.shape:
            raise ValueError(f"{seg_file} has size {labels.shape}, its image {image_file} {(height, width)}.")
        size = resized_size(height, width)
        if size is None:
            shutil.copyfile(image_file, out_image)
        else:
            rgb = np.asarray(image.convert("RGB"))
            resized = cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
            atomic_write(out_image, lambda f: Image.fromarray(resized).save(f, format="JPEG"))
            labels = cv2.resize(labels, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    save_label_map(labels, out_label)


def prepare(dataset_dir: Path, scan: bool = False) -> int:
    """Convert every image of the release; returns the number written."""
    release = dataset_dir / ADE20K_FULL_ROOT
    lut = label_lut()
    images = list_images(dataset_dir, scan)
    for split in ("training", "validation"):
        for kind in ("images_detectron2", "annotations_detectron2"):
            (release / kind / split).mkdir(parents=True, exist_ok=True)
    for image_file in tqdm.tqdm(images, unit="img"):
        split = "validation" if image_file.name.split("_")[1] == "val" else "training"
        convert_image(image_file, release / "images_detectron2" / split / image_file.name,
                      release / "annotations_detectron2" / split / f"{image_file.stem}.tif", lut)
    return len(images)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = prepare_argument_parser(__doc__, f"{ADE20K_FULL_ROOT}/")
    parser.add_argument("--scan", action="store_true", help="list images from the folders, not index_ade20k.pkl")
    args = parser.parse_args(argv)
    root = Path(args.root)
    return run_and_report(lambda: [f"Wrote {prepare(root, args.scan)} images and label maps under "
                                   f"{root / ADE20K_FULL_ROOT}"])


if __name__ == "__main__":
    sys.exit(main())

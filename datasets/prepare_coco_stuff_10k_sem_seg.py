#!/usr/bin/env python3
"""Convert the COCO-Stuff-10k release (cocostuff-10k-v1.1) to images and 171-class label PNGs.

Reads the release unzipped into ``coco/coco_stuff_10k/``: ``imageLists/{train,test}.txt`` (one file stem per
line), ``images/<stem>.jpg`` and ``annotations/<stem>.mat`` (MATLAB files; the label map is the variable ``S``:
0 = unlabelled, 1..182 = COCO-Stuff ids). Writes, for each split,

* ``coco/coco_stuff_10k/images_detectron2/<split>/<stem>.jpg`` (a copy of the image)
* ``coco/coco_stuff_10k/annotations_detectron2/<split>/<stem>.png`` (uint8: 0..170 in the order of
  ``COCO_STUFF_CATEGORIES``, 255 = ignore)

Labels are mapped as mmsegmentation's converter and ``reduce_zero_label`` do (COCO id -> its index among the 171
classes, unlabelled -> 255); the 11 COCO ids without masks also become 255, and a value above 182 is an error
naming the file. Files are written under a temporary name and renamed.

Usage::

    python datasets/prepare_coco_stuff_10k_sem_seg.py            # root: $DETECTRON2_DATASETS or ./datasets
    python datasets/prepare_coco_stuff_10k_sem_seg.py --root /data/datasets --splits test
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import scipy.io
import tqdm
from PIL import Image
from scipy.io.matlab import MatReadError

from mask2former_rankseg.data.datasets.coco_stuff import COCO_STUFF_10K_ROOT, coco_stuff_10k_label_lut
from mask2former_rankseg.data.label_maps import remap_labels, save_label_map
from mask2former_rankseg.data.prepare_cli import prepare_argument_parser, run_and_report
from mask2former_rankseg.utils.file_io import AtomicPath

SPLITS = ("train", "test")
RELEASE_URL = "http://calvin.inf.ed.ac.uk/wp-content/uploads/data/cocostuffdataset/cocostuff-10k-v1.1.zip"


def read_image_list(list_file: Path) -> List[str]:
    """The file stems listed in ``imageLists/<split>.txt`` (blank lines skipped)."""
    if not list_file.is_file():
        raise FileNotFoundError(f"{list_file} not found. Download {RELEASE_URL} and unzip it into "
                                f"{list_file.parent.parent} (see datasets/README.md).")
    return [line.strip() for line in list_file.read_text().splitlines() if line.strip()]


def read_label_map(mat_file: Path) -> np.ndarray:
    """[H, W] int64 ``S`` of one release ``.mat`` file; errors name the file."""
    try:
        mat = scipy.io.loadmat(str(mat_file))
    # a truncated or foreign file raises any of these; v7.3 (HDF5) files raise NotImplementedError
    except (MatReadError, OSError, ValueError, IndexError, TypeError, NotImplementedError) as e:
        raise ValueError(f"Cannot read {mat_file} as a MATLAB file ({e}); is it from cocostuff-10k-v1.1? "
                         "(v1.0 files are HDF5: use the v1.1 release.)") from e
    if "S" not in mat:
        raise ValueError(f"{mat_file} has no label map 'S' (variables: {sorted(k for k in mat if k[:2] != '__')}).")
    raw = np.asarray(mat["S"])
    if raw.ndim != 2:
        raise ValueError(f"{mat_file}: 'S' has shape {raw.shape}; expected an [H, W] label map.")
    if not np.issubdtype(raw.dtype, np.integer) and not np.array_equal(raw, np.round(raw)):
        raise ValueError(f"{mat_file}: 'S' holds non-integer values.")
    return raw.astype(np.int64)


def convert_image(stem: str, release: Path, split: str, lut: np.ndarray) -> None:
    """Copy one image and write its label PNG (after checking that both have the same size)."""
    image_file = release / "images" / f"{stem}.jpg"
    mat_file = release / "annotations" / f"{stem}.mat"
    for path in (image_file, mat_file):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing (listed in imageLists/{split}.txt).")
    labels = remap_labels(read_label_map(mat_file), lut, np.uint8, source=str(mat_file))
    with Image.open(image_file) as image:
        width, height = image.size
    if labels.shape != (height, width):
        raise ValueError(f"{mat_file} has size {labels.shape}, its image {image_file} {(height, width)}.")
    with AtomicPath(release / "images_detectron2" / split / image_file.name, suffix=".jpg") as tmp:
        shutil.copyfile(image_file, tmp)
    save_label_map(labels, release / "annotations_detectron2" / split / f"{stem}.png")


def prepare(root: Path, splits: Sequence[str] = SPLITS) -> int:
    """Convert ``splits`` of the release under ``root/coco/coco_stuff_10k``; returns the number of images."""
    release = root / COCO_STUFF_10K_ROOT
    lut = coco_stuff_10k_label_lut()
    total = 0
    for split in splits:
        stems = read_image_list(release / "imageLists" / f"{split}.txt")
        for stem in tqdm.tqdm(stems, desc=split, unit="img"):
            convert_image(stem, release, split, lut)
        total += len(stems)
    return total


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = prepare_argument_parser(__doc__, f"{COCO_STUFF_10K_ROOT}/")
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS)
    args = parser.parse_args(argv)
    root = Path(args.root)
    return run_and_report(lambda: [f"Converted {prepare(root, args.splits)} images and label maps into "
                                   f"{root / COCO_STUFF_10K_ROOT}/{{images,annotations}}_detectron2"])


if __name__ == "__main__":
    sys.exit(main())

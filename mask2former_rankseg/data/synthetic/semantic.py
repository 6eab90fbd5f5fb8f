"""The synthetic semantic dataset, in ADE20K's on-disk layout::

    OUT/
      images/{training,validation}/synthetic_{train,val}_NNNNN.png     RGB
      annotations_detectron2/{training,validation}/...png              uint8: 0..K-1, 255 = ignore
                                                                       (uint16, 65535 = ignore, for K = 864)
      categories.json                                                  names, colours, settings

K = 108 categories, each a (colour, texture, shape) triple: 12 colours x 3 textures x 3 shapes, so every
single cue value is shared by 9 or 36 categories and only the combination identifies a category. With
``num_classes=864``: 24 colours x 6 textures x 6 shapes (the many-class regime of ADE20K-Full). Each
image shows 2-6 objects of distinct categories on low-contrast grey noise (labelled ignore); objects
may overlap (later ones on top, labels follow the visible pixels) but every object keeps a visible
area of at least ``MIN_VISIBLE_PX`` and ``MIN_VISIBLE_FRACTION`` of its own area. Many categories, few per image:
the regime RankSeg is for.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np

from .categories import SyntheticCategory, label_encoding, semantic_categories
from .drawing import MIN_VISIBLE_PX, NUM_OBJECTS_RANGE, REFERENCE_SIZE, TEXTURE_PERIOD, paint_objects, place_objects
from .jobs import (
    IMAGES_PER_JOB,
    SPLITS,
    check_generation_args,
    file_stem,
    num_workers_for,
    run_jobs,
    staging_dir,
    write_png,
)

__all__ = ["render_semantic_sample", "generate_semantic_dataset"]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 4


def render_semantic_sample(rng: np.random.Generator, size: int,
                           categories: Sequence[SyntheticCategory]) -> Tuple[np.ndarray, np.ndarray]:
    """Draw one image and its label map.

    Args:
        rng: the only source of randomness (deterministic for a seeded generator).
        size: image height and width, pixels.
        categories: the category table (ids are indices into it).
    Returns:
        image [size, size, 3] uint8 RGB, label [size, size] (category ids; uint8 with 255 = background, or uint16
        with 65535 for 255+ categories, see :func:`~.categories.label_encoding`).
    """
    scale = size / REFERENCE_SIZE
    min_visible = MIN_VISIBLE_PX * scale * scale
    period = max(4, round(TEXTURE_PERIOD * scale))
    ys, xs = np.ogrid[0:size, 0:size]
    ys, xs = ys.astype(np.float32), xs.astype(np.float32)
    while True:
        owner_map, placed = place_objects(rng, size, categories, xs, ys, min_visible)
        if len(placed) >= NUM_OBJECTS_RANGE[0]:  # practically always; else draw a new layout
            break

    background = rng.uniform(95, 160) + rng.normal(0.0, 4.0, size=3)  # grey with a slight tint
    image = np.empty((size, size, 3), dtype=np.float32)
    image[:] = background.astype(np.float32)
    dtype, ignore_label = label_encoding(len(categories))
    label = np.full((size, size), ignore_label, dtype=dtype)
    paint_objects(rng, image, owner_map, placed, categories, xs, ys, period)
    for index, cat_id in enumerate(placed):
        label[owner_map == index] = cat_id
    image += 7.0 * rng.standard_normal(size=image.shape, dtype=np.float32)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), label


def _write_chunk(job: Tuple[str, int, str, str, int, int, int, int, int]) -> None:
    """Render and write images ``begin..end-1`` of one split; image ``i`` uses the generator seeded by
    (seed, split index, i), so the bytes do not depend on how the work is split."""
    tmp, split_index, split, folder, begin, end, size, seed, num_classes = job
    categories = semantic_categories(num_classes)
    for i in range(begin, end):
        image, label = render_semantic_sample(np.random.default_rng([seed, split_index, i]), size, categories)
        stem = file_stem(split, i)
        write_png(image, Path(tmp) / "images" / folder / f"{stem}.png")
        write_png(label, Path(tmp) / "annotations_detectron2" / folder / f"{stem}.png")


def generate_semantic_dataset(out_dir: str | os.PathLike, *, num_train: int = 2000, num_val: int = 200,
                              size: int = 128, seed: int = 0, overwrite: bool = False,
                              num_workers: Optional[int] = None, num_classes: int = 108) -> Path:
    """Write the synthetic semantic dataset to ``out_dir`` (atomically: temporary folder, then rename).

    Args:
        out_dir: destination; must not exist or be empty unless ``overwrite``.
        num_train, num_val: numbers of images per split.
        size: image height and width (objects scale with it; >= 32).
        seed: the whole output (every byte) is a function of the seed and these arguments.
        overwrite: replace an existing dataset at ``out_dir``.
        num_workers: processes writing images (None: up to the CPU count; the output does not
            depend on it, each image being drawn from its own seeded generator).
        num_classes: the category table: 108 (3 shapes x 12 colours x 3 textures) or 864 (6 x 24 x 6).
    Returns:
        ``out_dir`` as a Path.
    """
    out_dir = Path(out_dir)
    check_generation_args(out_dir, size, overwrite, num_train=num_train, num_val=num_val)
    start = time.perf_counter()
    categories = semantic_categories(num_classes)
    with staging_dir(out_dir, overwrite) as tmp:
        counts = {"train": num_train, "val": num_val}
        jobs = []
        for split_index, (split, folder) in enumerate(SPLITS.items()):
            (tmp / "images" / folder).mkdir(parents=True)
            (tmp / "annotations_detectron2" / folder).mkdir(parents=True)
            for begin in range(0, counts[split], IMAGES_PER_JOB):
                end = min(begin + IMAGES_PER_JOB, counts[split])
                jobs.append((str(tmp), split_index, split, folder, begin, end, size, seed, num_classes))
        run_jobs(_write_chunk, jobs, num_workers_for(num_train + num_val) if num_workers is None else num_workers)
        info = {
            "format_version": FORMAT_VERSION,
            "task": "semantic",
            "seed": seed,
            "image_size": [size, size],
            "num_images": counts,
            "ignore_label": label_encoding(num_classes)[1],
            "categories": [asdict(c) for c in categories],
        }
        # categories.json is written last: its presence marks a complete dataset.
        (tmp / "categories.json").write_text(json.dumps(info, indent=1) + "\n")
    logger.info("Wrote synthetic semantic dataset (%d train + %d val images, %dx%d) to %s in %.1f s",
                num_train, num_val, size, size, out_dir, time.perf_counter() - start)
    return out_dir

"""The synthetic panoptic dataset, in COCO panoptic format (things on stuff, repeated categories allowed).

Categories (:func:`~.categories.panoptic_categories`): the 108 synthetic object categories are things (dataset
ids 1..108); 8 background "stuff" categories (4 tones x plain / lined, ids 109..116) fill two regions split by a
random straight line. Each image has 2-6 object instances, several of one category possible, so instances must be
told apart.

Layout of ``OUT`` (``$DETECTRON2_DATASETS/synthetic/panoptic`` by default)::

    images/{training,validation}/<stem>.png
    panoptic/{training,validation}/<stem>.png          # RGB-encoded segment ids, 0 = void
    panoptic_semseg/{training,validation}/<stem>.png   # contiguous category ids 0..115
    panoptic_{train,val}.json                          # COCO panoptic: images, annotations, categories
    categories.json                                    # written last: marks a complete dataset
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ...constants import IGNORE_LABEL
from ...utils.panoptic import id2rgb
from .categories import STUFF_CATEGORIES, SyntheticCategory, panoptic_categories, semantic_categories
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

__all__ = ["render_panoptic_sample", "generate_panoptic_dataset"]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1


def render_panoptic_sample(rng: np.random.Generator, size: int, things: Sequence[SyntheticCategory]
                           ) -> Tuple[np.ndarray, np.ndarray, List[Dict], np.ndarray]:
    """Draw one image with its panoptic and semantic annotations.

    Returns:
        image [size, size, 3] uint8 RGB; segment ids [size, size] int64 (1..S, no void);
        ``segments_info`` (``id``, ``category_id`` contiguous 0..115, ``isthing``); semantic [size, size] uint8.
    """
    scale = size / REFERENCE_SIZE
    period = max(4, round(TEXTURE_PERIOD * scale))
    ys, xs = np.ogrid[0:size, 0:size]
    ys, xs = ys.astype(np.float32), xs.astype(np.float32)
    # two stuff regions split by a straight line through a random point at a random angle
    stuff_ids = rng.choice(len(STUFF_CATEGORIES), size=2, replace=False)
    cx, cy = rng.uniform(0.3, 0.7, size=2) * size
    angle = rng.uniform(0, np.pi)
    side = ((xs - cx) * np.sin(angle) - (ys - cy) * np.cos(angle)) > 0  # [size, size] bool
    image = np.empty((size, size, 3), dtype=np.float32)
    for region, stuff in ((~side, stuff_ids[0]), (side, stuff_ids[1])):
        _, color, pattern = STUFF_CATEGORIES[int(stuff)]
        tone = np.asarray(color, dtype=np.float32) + rng.uniform(-8, 8, size=3).astype(np.float32)
        layer = np.broadcast_to(tone, (size, size, 3)).copy()
        if pattern == "lined":
            lines = ((xs + ys) % max(3, period // 2)) < 1
            layer[np.broadcast_to(lines, (size, size))] *= 0.6
        image[region] = layer[region]
    while True:
        owner, placed = place_objects(rng, size, things, xs, ys, MIN_VISIBLE_PX * scale * scale, distinct=False)
        if len(placed) >= NUM_OBJECTS_RANGE[0]:
            break
    paint_objects(rng, image, owner, placed, things, xs, ys, period)
    image += 7.0 * rng.standard_normal(size=image.shape, dtype=np.float32)

    segments = np.zeros((size, size), dtype=np.int64)
    semantic = np.full((size, size), IGNORE_LABEL, dtype=np.uint8)
    info: List[Dict] = []
    num_things = len(things)
    for region, stuff in ((~side, stuff_ids[0]), (side, stuff_ids[1])):
        mask = region & (owner < 0)
        if mask.any():
            info.append({"id": len(info) + 1, "category_id": num_things + int(stuff), "isthing": False})
            segments[mask] = info[-1]["id"]
            semantic[mask] = num_things + int(stuff)
    for index, cat_id in enumerate(placed):
        mask = owner == index
        info.append({"id": len(info) + 1, "category_id": int(cat_id), "isthing": True})
        segments[mask] = info[-1]["id"]
        semantic[mask] = int(cat_id)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), segments, info, semantic


def _bbox(mask: np.ndarray) -> List[int]:
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    return [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]


def _write_chunk(job: Tuple[str, int, str, str, int, int, int, int]) -> List[Dict]:
    """Render images ``begin..end-1`` of one split (image ``i`` from the generator seeded by (seed, split
    index, i)); returns their COCO panoptic annotations (dataset category ids)."""
    tmp, split_index, split, folder, begin, end, size, seed = job
    things = semantic_categories()
    annotations = []
    for i in range(begin, end):
        image, segments, info, semantic = render_panoptic_sample(
            np.random.default_rng([seed, 100 + split_index, i]), size, things)
        stem = file_stem(split, i)
        write_png(image, Path(tmp) / "images" / folder / f"{stem}.png")
        write_png(id2rgb(segments), Path(tmp) / "panoptic" / folder / f"{stem}.png")
        write_png(semantic, Path(tmp) / "panoptic_semseg" / folder / f"{stem}.png")
        segments_info = [{"id": s["id"], "category_id": s["category_id"] + 1, "iscrowd": 0,
                          "area": int((segments == s["id"]).sum()), "bbox": _bbox(segments == s["id"])}
                         for s in info]
        annotations.append({"image_id": stem, "file_name": f"{stem}.png", "segments_info": segments_info})
    return annotations


def generate_panoptic_dataset(out_dir: str | os.PathLike, *, num_train: int = 2000, num_val: int = 200,
                              size: int = 128, seed: int = 0, overwrite: bool = False,
                              num_workers: Optional[int] = None) -> Path:
    """Write the synthetic panoptic dataset to ``out_dir`` (atomically: temporary folder, then rename).

    Same arguments as :func:`~.semantic.generate_semantic_dataset`.
    """
    out_dir = Path(out_dir)
    check_generation_args(out_dir, size, overwrite, num_train=num_train, num_val=num_val)
    start = time.perf_counter()
    with staging_dir(out_dir, overwrite) as tmp:
        counts = {"train": num_train, "val": num_val}
        categories = panoptic_categories()
        for split_index, (split, folder) in enumerate(SPLITS.items()):
            for sub in ("images", "panoptic", "panoptic_semseg"):
                (tmp / sub / folder).mkdir(parents=True)
            jobs = [(str(tmp), split_index, split, folder, b, min(b + IMAGES_PER_JOB, counts[split]), size, seed)
                    for b in range(0, counts[split], IMAGES_PER_JOB)]
            workers = num_workers_for(counts[split]) if num_workers is None else num_workers
            chunks = run_jobs(_write_chunk, jobs, workers)
            annotations = [a for chunk in chunks for a in chunk]
            images = [{"id": a["image_id"], "file_name": a["image_id"] + ".png", "height": size, "width": size}
                      for a in annotations]
            (tmp / f"panoptic_{split}.json").write_text(json.dumps(
                {"images": images, "annotations": annotations, "categories": categories}))
        info = {"format_version": FORMAT_VERSION, "task": "panoptic", "seed": seed, "image_size": [size, size],
                "num_images": counts, "categories": categories}
        (tmp / "categories.json").write_text(json.dumps(info, indent=1) + "\n")  # last: marks completion
    logger.info("Wrote synthetic panoptic dataset (%d train + %d val images, %dx%d) to %s in %.1f s",
                num_train, num_val, size, size, out_dir, time.perf_counter() - start)
    return out_dir

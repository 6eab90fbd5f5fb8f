"""Embedded synthetic datasets, generated deterministically in seconds.

Semantic segmentation (``--task semantic``), in ADE20K's on-disk layout::

    OUT/
      images/{training,validation}/synthetic_{train,val}_NNNNN.png     RGB
      annotations_detectron2/{training,validation}/...png              uint8: 0..K-1, 255 = ignore
                                                                       (uint16, 65535 = ignore, for K = 864)
      categories.json                                                  names, colours, settings

K = 108 categories, each a (colour, texture, shape) triple: 12 colours x 3 textures x 3 shapes, so every
single cue value is shared by 9 or 36 categories and only the combination identifies a category. With
``--num-classes 864``: 24 colours x 6 textures x 6 shapes (the many-class regime of ADE20K-Full). Each
image shows 2-6 objects of distinct categories on low-contrast grey noise (labelled ignore); objects
may overlap (later ones on top, labels follow the visible pixels) but every object keeps a visible
area of at least ``MIN_VISIBLE_PX`` and ``MIN_VISIBLE_FRACTION`` of its own area. Many categories, few per image: the
regime RankSeg is for.

Usage::

    python -m mask2former_rankseg.data.synthetic --task semantic --out datasets/synthetic/sem_seg
    python -m mask2former_rankseg.data.synthetic --task semantic --num-classes 864 --out datasets/synthetic/sem_seg_864

``--task panoptic`` (``synthetic_panoptic.py``), ``--task video`` (YouTube-VIS format) and ``--task vspw`` (VSPW
layout; both in ``synthetic_video.py``) write the other embedded datasets.

The output is written to a temporary folder next to ``OUT`` and renamed into place when complete,
so an interrupted run never leaves a partial dataset at ``OUT``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from .datasets.synthetic_sem_seg import (
    MORE_SHAPES,
    MORE_TEXTURES,
    SyntheticCategory,
    label_encoding,
    semantic_categories,
)

__all__ = [
    "SyntheticCategory",
    "semantic_categories",
    "render_semantic_sample",
    "generate_semantic_dataset",
    "main",
]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 4
SPLITS: Dict[str, str] = {"train": "training", "val": "validation"}

REFERENCE_SIZE = 128  # object sizes and areas below are for 128x128 images and scale with --size
OBJECT_SIZE_RANGE = (20, 60)  # bounding extent of an object, pixels
MIN_VISIBLE_PX = 60  # smallest visible area of an object, pixels
MIN_VISIBLE_FRACTION = 0.7  # of the object's own (in-image) area
NUM_OBJECTS_RANGE = (2, 6)
TEXTURE_PERIOD = 8  # stripe / checker period, pixels
DARK_FACTOR = 0.4  # the second tone of striped / checkered objects is the colour times this
PLACEMENT_TRIES = 30


# ---------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------


def _shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    """Boolean mask of ``shape`` of half-extent ``r`` on offsets (dx, dy) from its centre."""
    if shape == "disc":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        return (np.abs(dx) <= r) & (np.abs(dy) <= r)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= r
    if shape == "triangle":  # apex up, base down
        return (dy >= -r) & (dy <= r) & (np.abs(dx) <= (dy + r) / 2)
    if shape == "ring":
        d2 = dx * dx + dy * dy
        return (d2 <= r * r) & (d2 >= (0.55 * r) ** 2)
    if shape == "cross":
        arm = r / 3
        return ((np.abs(dx) <= arm) & (np.abs(dy) <= r)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= r))
    raise ValueError(f"Unknown shape {shape!r}; known: {MORE_SHAPES}.")


def _texture_mask(texture: str, xs: np.ndarray, ys: np.ndarray, period: int, rng: np.random.Generator) -> np.ndarray:
    """True where the texture shows the object's colour, False where its dark tone."""
    half = max(period // 2, 1)
    ox, oy = rng.integers(0, period, size=2)
    if texture == "solid":
        return np.ones(np.broadcast(xs, ys).shape, dtype=bool)
    if texture == "hstriped":
        return np.broadcast_to((ys + oy) % period < half, np.broadcast(xs, ys).shape)
    if texture == "vstriped":
        return np.broadcast_to((xs + ox) % period < half, np.broadcast(xs, ys).shape)
    if texture == "dstriped":
        return (xs + ys + ox) % period < half
    if texture == "checkered":
        return ((xs + ox) // half + (ys + oy) // half) % 2 == 0
    if texture == "dotted":
        return ~((((xs + ox) % period) < half) & (((ys + oy) % period) < half))
    raise ValueError(f"Unknown texture {texture!r}; known: {MORE_TEXTURES}.")


def render_semantic_sample(rng: np.random.Generator, size: int,
                           categories: Sequence[SyntheticCategory]) -> Tuple[np.ndarray, np.ndarray]:
    """Draw one image and its label map.

    Args:
        rng: the only source of randomness (deterministic for a seeded generator).
        size: image height and width, pixels.
        categories: the category table (ids are indices into it).
    Returns:
        image [size, size, 3] uint8 RGB, label [size, size] (category ids; uint8 with 255 = background, or uint16
        with 65535 for 255+ categories, see :func:`label_encoding`).
    """
    scale = size / REFERENCE_SIZE
    min_visible = MIN_VISIBLE_PX * scale * scale
    period = max(4, round(TEXTURE_PERIOD * scale))
    ys, xs = np.ogrid[0:size, 0:size]
    ys, xs = ys.astype(np.float32), xs.astype(np.float32)
    while True:
        owner_map, placed = _place_objects(rng, size, categories, xs, ys, min_visible)
        if len(placed) >= NUM_OBJECTS_RANGE[0]:  # practically always; else draw a new layout
            break

    background = rng.uniform(95, 160) + rng.normal(0.0, 4.0, size=3)  # grey with a slight tint
    image = np.empty((size, size, 3), dtype=np.float32)
    image[:] = background.astype(np.float32)
    dtype, ignore_label = label_encoding(len(categories))
    label = np.full((size, size), ignore_label, dtype=dtype)
    _paint_objects(rng, image, owner_map, placed, categories, xs, ys, period)
    for index, cat_id in enumerate(placed):
        label[owner_map == index] = cat_id
    image += 7.0 * rng.standard_normal(size=image.shape, dtype=np.float32)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), label


def _paint_objects(rng: np.random.Generator, image: np.ndarray, owner_map: np.ndarray, placed: Sequence[int],
                   categories: Sequence[SyntheticCategory], xs: np.ndarray, ys: np.ndarray, period: int) -> None:
    """Paint each placed object's visible pixels (``owner_map == index``) with its colour and texture."""
    for index, cat_id in enumerate(placed):
        cat = categories[cat_id]
        mine = owner_map == index
        rows, cols = np.nonzero(mine.any(axis=1))[0], np.nonzero(mine.any(axis=0))[0]
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        visible = owner_map[box] == index
        color = np.asarray(cat.color, dtype=np.float32) + rng.uniform(-12, 12, size=3).astype(np.float32)
        bright = _texture_mask(cat.texture, xs[:, box[1]], ys[box[0]], period, rng)
        pixels = np.where(bright[..., None], color, color * DARK_FACTOR)
        image[box][visible] = pixels[visible]


def _place_objects(rng: np.random.Generator, size: int, categories: Sequence[SyntheticCategory],
                   xs: np.ndarray, ys: np.ndarray, min_visible: float,
                   distinct: bool = True) -> Tuple[np.ndarray, List[int]]:
    """Choose 2-6 categories (distinct ones unless ``distinct`` is False) and place them one on top of the
    other.

    A placement is kept only if every object (the new one and those below it) keeps a visible area of
    at least ``min_visible`` pixels and ``MIN_VISIBLE_FRACTION`` of its own area.

    Returns:
        owner [size, size] int16 (paint index of the object visible at each pixel, -1 = background),
        the category ids in paint order.
    """
    scale = size / REFERENCE_SIZE
    num_objects = int(rng.integers(NUM_OBJECTS_RANGE[0], NUM_OBJECTS_RANGE[1] + 1))
    chosen = rng.choice(len(categories), size=num_objects, replace=not distinct)
    owner = np.full((size, size), -1, dtype=np.int16)
    full_areas: List[int] = []
    placed: List[int] = []
    for cat_id in chosen:
        shape = categories[int(cat_id)].shape
        for _ in range(PLACEMENT_TRIES):
            r = rng.uniform(*OBJECT_SIZE_RANGE) * scale / 2
            cx, cy = rng.uniform(r, size - r, size=2)  # whole object inside the image
            mask = _shape_mask(shape, xs - cx, ys - cy, r)
            area = int(mask.sum())
            if area < min_visible:
                continue
            candidate = np.where(mask, np.int16(len(placed)), owner)
            visible = np.bincount((candidate + 1).ravel(), minlength=len(placed) + 2)[1:]
            needed = np.maximum(min_visible, MIN_VISIBLE_FRACTION * np.asarray(full_areas + [area]))
            if np.all(visible >= needed):
                owner = candidate
                full_areas.append(area)
                placed.append(int(cat_id))
                break
    return owner, placed


# ---------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------


def _file_stem(split: str, index: int) -> str:
    return f"synthetic_{split}_{index:05d}"


_CHUNK = 100  # images per job of the process pool


def _write_png(array: np.ndarray, path: Path) -> None:
    Image.fromarray(array).save(path, format="PNG", compress_level=1)


def _num_workers(num_images: int) -> int:
    if num_images < 2 * _CHUNK:
        return 1
    return max(1, min(os.cpu_count() or 1, 8, num_images // _CHUNK))


def _write_chunk(job: Tuple[str, int, str, str, int, int, int, int, int]) -> None:
    """Render and write images ``begin..end-1`` of one split; image ``i`` uses the generator seeded by
    (seed, split index, i), so the bytes do not depend on how the work is split."""
    tmp, split_index, split, folder, begin, end, size, seed, num_classes = job
    categories = semantic_categories(num_classes)
    for i in range(begin, end):
        image, label = render_semantic_sample(np.random.default_rng([seed, split_index, i]), size, categories)
        stem = _file_stem(split, i)
        _write_png(image, Path(tmp) / "images" / folder / f"{stem}.png")
        _write_png(label, Path(tmp) / "annotations_detectron2" / folder / f"{stem}.png")


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
            for begin in range(0, counts[split], _CHUNK):
                end = min(begin + _CHUNK, counts[split])
                jobs.append((str(tmp), split_index, split, folder, begin, end, size, seed, num_classes))
        run_jobs(_write_chunk, jobs, _num_workers(num_train + num_val) if num_workers is None else num_workers)
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


def run_jobs(worker: Callable, jobs: Sequence, num_workers: int) -> List:
    """``[worker(job) for job in jobs]``, in ``num_workers`` processes when more than one."""
    if num_workers <= 1:
        return [worker(job) for job in jobs]
    with ProcessPoolExecutor(max_workers=num_workers) as pool:
        return list(pool.map(worker, jobs))


def check_generation_args(out_dir: Path, size: int, overwrite: bool, **counts: int) -> None:
    """The checks every generator makes: ``size`` >= 32, each count >= 1, ``out_dir`` empty unless ``overwrite``.

    Raises:
        ValueError: a bad size or count (named).
        FileExistsError: ``out_dir`` holds files and ``overwrite`` is off.
    """
    if size < 32:
        raise ValueError(f"--size must be at least 32 pixels, got {size}.")
    bad = {k: v for k, v in counts.items() if v < 1}
    if bad:
        raise ValueError("Need at least 1 of each: got " + ", ".join(f"{k}={v}" for k, v in counts.items()) + ".")
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{out_dir} already exists and is not empty; pass --overwrite to replace it.")


@contextlib.contextmanager
def staging_dir(out_dir: Path, overwrite: bool) -> Iterator[Path]:
    """A temporary folder next to ``out_dir`` to write a dataset into; renamed to ``out_dir`` when the block
    finishes, removed when it raises (so ``out_dir`` never holds a partial dataset)."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the dataset is not
        yield tmp
        _move_into_place(tmp, out_dir, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _move_into_place(tmp: Path, out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and overwrite and any(out_dir.iterdir()):
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        os.rename(out_dir, old / out_dir.name)
        os.rename(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
        return
    try:
        os.rename(tmp, out_dir)  # replaces an empty folder; fails on a non-empty one
    except OSError:
        if (out_dir / "categories.json").is_file():  # another process finished the same dataset first
            shutil.rmtree(tmp, ignore_errors=True)
            return
        raise


def load_categories(dataset_dir: str | os.PathLike) -> dict:
    """The ``categories.json`` of a generated dataset."""
    path = Path(dataset_dir) / "categories.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise OSError(f"Cannot read synthetic dataset description {path}: {e}") from e


# ---------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------

TASKS = {
    "semantic": "ADE20K-layout semantic segmentation",
    "panoptic": "COCO panoptic format",
    "video": "YouTube-VIS-format video instance segmentation",
    "vspw": "VSPW-layout video semantic segmentation",
}


def _parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m mask2former_rankseg.data.synthetic",
        description="Generate an embedded synthetic segmentation dataset (deterministic for a seed).",
    )
    parser.add_argument("--task", required=True, choices=list(TASKS),
                        help="; ".join(f"{k}: {v}" for k, v in TASKS.items()))
    parser.add_argument("--out", required=True, help="output folder (must not exist or be empty)")
    parser.add_argument("--num-train", type=int, default=None,
                        help="training images (videos for video/vspw); default 2000 images, 160 / 120 videos")
    parser.add_argument("--num-val", type=int, default=None,
                        help="validation images (videos); default 200 images, 20 videos")
    parser.add_argument("--num-frames", type=int, default=None,
                        help="frames per video (video: 16, vspw: 24); video tasks only")
    parser.add_argument("--size", type=int, default=128, help="image height and width")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-classes", type=int, default=108, choices=[108, 864],
                        help="semantic only: 108 categories, or 864 (the many-class variant)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset at --out")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parse_args(argv)
    from .synthetic_panoptic import generate_panoptic_dataset
    from .synthetic_video import generate_vspw_dataset, generate_ytvis_dataset

    generators: Dict[str, Callable[..., Path]] = {"semantic": generate_semantic_dataset,
                                                  "panoptic": generate_panoptic_dataset,
                                                  "video": generate_ytvis_dataset, "vspw": generate_vspw_dataset}
    video = args.task in ("video", "vspw")
    if args.num_frames is not None and not video:
        print(f"error: --num-frames is for the video tasks, not --task {args.task}.", file=sys.stderr)
        return 2
    if args.task != "semantic" and args.num_classes != 108:
        print(f"error: --num-classes {args.num_classes} is only available with --task semantic.", file=sys.stderr)
        return 2
    names = ("num_train", "num_val", "num_frames") if video else ("num_train", "num_val")
    options = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
    if args.task == "semantic":
        options["num_classes"] = args.num_classes
    start = time.perf_counter()
    try:
        out = generators[args.task](args.out, size=args.size, seed=args.seed, overwrite=args.overwrite, **options)
    except (FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    info = load_categories(out)
    counts = info["num_videos"] if video else info["num_images"]
    unit = f"videos of {info['num_frames']} frames" if video else "images"
    print(f"Wrote {counts['train']} train + {counts['val']} val {unit} ({TASKS[args.task]}) to {out} "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Synthetic videos: moving, occluding objects, written as a YouTube-VIS dataset or a VSPW-layout dataset.

Each video shows 2-4 objects of the 48 video categories (4 shapes x 12 colours, see
:func:`~.categories.video_categories`) on grey noise. Every object moves in a straight line at a constant speed,
bouncing off the image borders; objects are painted in a fixed order, so later ones occlude earlier ones when
they cross. About a quarter of the objects exist only for part of the video (they appear late or vanish early),
so tracks are absent in some frames. In YouTube-VIS videos one category may occur twice (instances must be told
apart by tracking); in VSPW videos the categories are distinct.

YouTube-VIS layout (``--task video``; ``$DETECTRON2_DATASETS/synthetic/ytvis`` by default)::

    {train,valid}/JPEGImages/<video>/<frame>.jpg
    {train,valid}.json          # YouTube-VIS JSON with annotations for both splits (compressed RLE)
    categories.json             # written last: marks a complete dataset

VSPW layout (``--task vspw``; ``$DETECTRON2_DATASETS/synthetic/vspw`` by default)::

    data/<video>/origin/<frame>.jpg
    data/<video>/mask/<frame>.png    # uint8: 0 = "others" (the background, ignored), c + 1 for category c
    {train,val}.txt
    categories.json

Everything is a function of the seed and the arguments; each video comes from its own seeded generator, so
the output does not depend on how many processes write it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from pycocotools import mask as mask_utils

from .categories import SyntheticCategory, video_categories, ytvis_categories
from .drawing import REFERENCE_SIZE, shape_mask
from .jobs import check_generation_args, num_workers_for, run_jobs, staging_dir, write_jpeg, write_png

__all__ = ["VideoScene", "render_video_scene", "generate_ytvis_dataset", "generate_vspw_dataset"]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
NUM_VIDEO_OBJECTS = (2, 4)
VIDEO_OBJECT_SIZE = (18, 44)  # bounding extent of an object at REFERENCE_SIZE, pixels
SPEED_RANGE = (1.0, 4.0)  # pixels per frame at REFERENCE_SIZE
PARTIAL_TRACK_PROB = 0.25  # probability that an object exists for only part of the video
REPEAT_CATEGORY_PROB = 0.3  # YouTube-VIS: probability that the last object repeats the first one's category
COLOR_JITTER = 12.0
NOISE_STD = 7.0
_VIDEOS_PER_JOB = 8


@dataclass
class VideoScene:
    """One rendered video.

    Attributes:
        frames: [T, H, W, 3] uint8 RGB.
        owner: [T, H, W] int16, index of the object visible at each pixel (-1 = background).
        category_ids: category of each object (index into the category table), in paint order.
    """

    frames: np.ndarray
    owner: np.ndarray
    category_ids: List[int]


def render_video_scene(rng: np.random.Generator, size: int, num_frames: int,
                       categories: Sequence[SyntheticCategory], allow_repeats: bool = False) -> VideoScene:
    """Draw one video of ``num_frames`` frames of ``size`` x ``size`` pixels (see the module docstring).

    ``rng`` is the only source of randomness. With ``allow_repeats``, two objects may share a category.
    """
    scale = size / REFERENCE_SIZE
    count = int(rng.integers(NUM_VIDEO_OBJECTS[0], NUM_VIDEO_OBJECTS[1] + 1))
    cats = [int(c) for c in rng.choice(len(categories), size=count, replace=False)]
    if allow_repeats and rng.random() < REPEAT_CATEGORY_PROB:
        cats[-1] = cats[0]
    radii = rng.uniform(*VIDEO_OBJECT_SIZE, size=count) * scale / 2
    centres = np.stack([_trajectory(rng, size, r, num_frames, scale) for r in radii])  # [N, T, 2] (x, y)
    alive = np.ones((count, num_frames), dtype=bool)
    for k in range(count):
        if num_frames > 1 and rng.random() < PARTIAL_TRACK_PROB:
            span = int(rng.integers(math.ceil(num_frames / 2), num_frames))
            start = int(rng.integers(0, num_frames - span + 1))
            alive[k] = False
            alive[k, start:start + span] = True
    colors = np.stack([np.asarray(categories[c].color, np.float32) for c in cats])
    colors = colors + rng.uniform(-COLOR_JITTER, COLOR_JITTER, size=colors.shape).astype(np.float32)
    background = (rng.uniform(95, 160) + rng.normal(0.0, 4.0, size=3)).astype(np.float32)

    ys, xs = np.ogrid[0:size, 0:size]
    ys, xs = ys.astype(np.float32), xs.astype(np.float32)
    owner = np.full((num_frames, size, size), -1, dtype=np.int16)
    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    for t in range(num_frames):
        for k in range(count):
            if alive[k, t]:
                cx, cy = centres[k, t]
                owner[t][shape_mask(categories[cats[k]].shape, xs - cx, ys - cy, float(radii[k]))] = k
        image = np.empty((size, size, 3), dtype=np.float32)
        image[:] = background
        visible = owner[t] >= 0
        image[visible] = colors[owner[t][visible]]
        image += NOISE_STD * rng.standard_normal(size=image.shape, dtype=np.float32)
        frames[t] = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return VideoScene(frames, owner, cats)


def _trajectory(rng: np.random.Generator, size: int, r: float, num_frames: int, scale: float) -> np.ndarray:
    """[T, 2] centres of an object of half-extent ``r`` moving at a constant speed and bouncing off the borders."""
    pos = rng.uniform(r, size - r, size=2)
    angle = rng.uniform(0, 2 * np.pi)
    vel = rng.uniform(*SPEED_RANGE) * scale * np.array([np.cos(angle), np.sin(angle)])
    low, high = r, size - r
    out = np.empty((num_frames, 2))
    for t in range(num_frames):
        out[t] = pos
        pos = pos + vel
        for axis in range(2):  # reflect at the borders
            if pos[axis] < low:
                pos[axis], vel[axis] = 2 * low - pos[axis], -vel[axis]
            elif pos[axis] > high:
                pos[axis], vel[axis] = 2 * high - pos[axis], -vel[axis]
    return out


# ---------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------


def _video_name(split: str, index: int) -> str:
    return f"{split}_{index:05d}"


def _ytvis_job(job: Tuple[str, int, str, int, int, int, int, int]) -> Tuple[List[Dict], List[Dict]]:
    """Render and write videos ``begin..end-1`` of one YouTube-VIS split; returns their ``videos`` and
    ``annotations`` entries (annotation ids are assigned by the caller)."""
    tmp, split_index, folder, begin, end, size, num_frames, seed = job
    categories = video_categories()
    videos, annotations = [], []
    for i in range(begin, end):
        scene = render_video_scene(np.random.default_rng([seed, 200 + split_index, i]), size, num_frames,
                                   categories, allow_repeats=True)
        name = _video_name(folder, i)
        (Path(tmp) / folder / "JPEGImages" / name).mkdir(parents=True)
        file_names = [f"{name}/{5 * t:05d}.jpg" for t in range(num_frames)]  # YouTube-VIS keeps every 5th frame
        for t, file_name in enumerate(file_names):
            write_jpeg(scene.frames[t], Path(tmp) / folder / "JPEGImages" / file_name)
        video_id = i + 1
        videos.append({"id": video_id, "width": size, "height": size, "length": num_frames,
                       "file_names": file_names})
        for k, cat in enumerate(scene.category_ids):
            masks = scene.owner == k
            if not masks.any():  # hidden in every frame: no track
                continue
            segmentations, areas, bboxes = [], [], []
            for mask in masks:
                if not mask.any():
                    segmentations.append(None)
                    areas.append(None)
                    bboxes.append(None)
                    continue
                rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
                bboxes.append([float(v) for v in mask_utils.toBbox(rle)])
                rle["counts"] = rle["counts"].decode("ascii")
                segmentations.append(rle)
                areas.append(int(mask.sum()))
            annotations.append({"video_id": video_id, "category_id": cat + 1, "iscrowd": 0, "width": size,
                                "height": size, "length": num_frames, "segmentations": segmentations,
                                "areas": areas, "bboxes": bboxes})
    return videos, annotations


def _vspw_job(job: Tuple[str, int, str, int, int, int, int, int]) -> List[str]:
    """Render and write videos ``begin..end-1`` of one VSPW split; returns their names."""
    tmp, split_index, split, begin, end, size, num_frames, seed = job
    categories = video_categories()
    names = []
    for i in range(begin, end):
        scene = render_video_scene(np.random.default_rng([seed, 300 + split_index, i]), size, num_frames,
                                   categories, allow_repeats=False)
        name = _video_name(split, i)
        origin, mask = Path(tmp) / "data" / name / "origin", Path(tmp) / "data" / name / "mask"
        origin.mkdir(parents=True)
        mask.mkdir()
        lut = np.array([0] + [c + 1 for c in scene.category_ids], dtype=np.uint8)  # owner + 1 -> VSPW value
        for t in range(num_frames):
            write_jpeg(scene.frames[t], origin / f"{t:05d}.jpg")
            write_png(lut[scene.owner[t] + 1], mask / f"{t:05d}.png")
        names.append(name)
    return names


def _generate(out_dir: str | os.PathLike, task: str, splits: Dict[str, str], write_split: Callable, *,
              num_train: int, num_val: int, num_frames: int, size: int, seed: int, overwrite: bool,
              num_workers: Optional[int]) -> Path:
    """Shared checks, temporary folder, ``categories.json`` and atomic rename of both video generators."""
    out_dir = Path(out_dir)
    check_generation_args(out_dir, size, overwrite, num_train=num_train, num_val=num_val, num_frames=num_frames)
    start = time.perf_counter()
    with staging_dir(out_dir, overwrite) as tmp:
        counts = {"train": num_train, "val": num_val}
        for split_index, (split, folder) in enumerate(splits.items()):
            jobs = [(str(tmp), split_index, folder, b, min(b + _VIDEOS_PER_JOB, counts[split]), size, num_frames,
                     seed) for b in range(0, counts[split], _VIDEOS_PER_JOB)]
            workers = num_workers_for(counts[split] * num_frames) if num_workers is None else num_workers
            write_split(tmp, split, folder, jobs, workers)
        info = {"format_version": FORMAT_VERSION, "task": task, "seed": seed, "image_size": [size, size],
                "num_frames": num_frames, "num_videos": counts,
                "categories": [asdict(c) for c in video_categories()]}
        (tmp / "categories.json").write_text(json.dumps(info, indent=1) + "\n")  # last: marks completion
    logger.info("Wrote synthetic %s dataset (%d train + %d val videos of %d frames, %dx%d) to %s in %.1f s", task,
                num_train, num_val, num_frames, size, size, out_dir, time.perf_counter() - start)
    return out_dir


def _write_ytvis_split(tmp: Path, split: str, folder: str, jobs: List[Tuple], workers: int) -> None:
    videos, annotations = [], []
    for part_videos, part_annotations in run_jobs(_ytvis_job, jobs, workers):
        videos.extend(part_videos)
        annotations.extend(part_annotations)
    for i, ann in enumerate(annotations):
        ann["id"] = i + 1
    categories = [{"id": cid, "name": name, "supercategory": "object"} for cid, name, _ in ytvis_categories()]
    (tmp / f"{folder}.json").write_text(json.dumps(
        {"info": {"description": "mask2former_rankseg synthetic YouTube-VIS"}, "videos": videos,
         "annotations": annotations, "categories": categories}))


def _write_vspw_split(tmp: Path, split: str, folder: str, jobs: List[Tuple], workers: int) -> None:
    names = [n for part in run_jobs(_vspw_job, jobs, workers) for n in part]
    (tmp / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))


def generate_ytvis_dataset(out_dir: str | os.PathLike, *, num_train: int = 160, num_val: int = 20,
                           num_frames: int = 16, size: int = 128, seed: int = 0, overwrite: bool = False,
                           num_workers: Optional[int] = None) -> Path:
    """Write the synthetic YouTube-VIS dataset to ``out_dir`` (atomically: temporary folder, then rename).

    Args:
        out_dir: destination; must not exist or be empty unless ``overwrite``.
        num_train, num_val: videos per split.
        num_frames: frames per video.
        size: frame height and width (objects and speeds scale with it; >= 32).
        seed: the whole output is a function of the seed and these arguments.
        overwrite: replace an existing dataset at ``out_dir``.
        num_workers: writing processes (None: up to the CPU count; the output does not depend on it).
    """
    return _generate(out_dir, "video", {"train": "train", "val": "valid"}, _write_ytvis_split, num_train=num_train,
                     num_val=num_val, num_frames=num_frames, size=size, seed=seed, overwrite=overwrite,
                     num_workers=num_workers)


def generate_vspw_dataset(out_dir: str | os.PathLike, *, num_train: int = 120, num_val: int = 20,
                          num_frames: int = 24, size: int = 128, seed: int = 0, overwrite: bool = False,
                          num_workers: Optional[int] = None) -> Path:
    """Write the synthetic VSPW-layout dataset to ``out_dir``; arguments as :func:`generate_ytvis_dataset`.

    The default 24 frames per video exceed 16, so validation videos count for VC16 (VSPW skips videos of at most
    16 frames) and are split into two evaluation clips of 20 and 4 frames.
    """
    return _generate(out_dir, "vspw", {"train": "train", "val": "val"}, _write_vspw_split, num_train=num_train,
                     num_val=num_val, num_frames=num_frames, size=size, seed=seed, overwrite=overwrite,
                     num_workers=num_workers)

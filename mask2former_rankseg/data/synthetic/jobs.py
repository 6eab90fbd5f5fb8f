"""Writing a synthetic dataset: argument checks, a staging folder renamed into place, a process pool of seeded
jobs, image files, and generation on first use.

Every generator renders each image (or video) from its own generator seeded by (seed, split, index), so the
output does not depend on how the work is split between processes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Sequence

import numpy as np
from PIL import Image

__all__ = [
    "SPLITS",
    "IMAGES_PER_JOB",
    "check_generation_args",
    "staging_dir",
    "run_jobs",
    "num_workers_for",
    "file_stem",
    "write_png",
    "write_jpeg",
    "load_categories",
    "ensure_synthetic_dataset",
]

logger = logging.getLogger(__name__)

SPLITS: Dict[str, str] = {"train": "training", "val": "validation"}
"""Split name -> folder name of the image datasets (ADE20K's)."""

IMAGES_PER_JOB = 100
"""Images rendered by one job of the process pool."""

JPEG_QUALITY = 95


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


def run_jobs(worker: Callable, jobs: Sequence, num_workers: int) -> List:
    """``[worker(job) for job in jobs]``, in ``num_workers`` processes when more than one."""
    if num_workers <= 1:
        return [worker(job) for job in jobs]
    with ProcessPoolExecutor(max_workers=num_workers) as pool:
        return list(pool.map(worker, jobs))


def num_workers_for(num_images: int) -> int:
    """Processes worth starting for ``num_images`` images (or frames): one per ``IMAGES_PER_JOB``, at most the CPU
    count and 8, and none extra below two jobs' worth."""
    if num_images < 2 * IMAGES_PER_JOB:
        return 1
    return max(1, min(os.cpu_count() or 1, 8, num_images // IMAGES_PER_JOB))


def file_stem(split: str, index: int) -> str:
    """``synthetic_<split>_<index:05d>``: the file name (without extension) of image ``index`` of a split."""
    return f"synthetic_{split}_{index:05d}"


def write_png(array: np.ndarray, path: Path) -> None:
    """Write an image or label array as a PNG (fast compression)."""
    Image.fromarray(array).save(path, format="PNG", compress_level=1)


def write_jpeg(array: np.ndarray, path: Path) -> None:
    """Write an RGB frame as a JPEG of quality ``JPEG_QUALITY``."""
    Image.fromarray(array).save(path, format="JPEG", quality=JPEG_QUALITY)


def load_categories(dataset_dir: str | os.PathLike) -> dict:
    """The ``categories.json`` of a generated dataset."""
    path = Path(dataset_dir) / "categories.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise OSError(f"Cannot read synthetic dataset description {path}: {e}") from e


def ensure_synthetic_dataset(root: Path, task: str, what: str, generate: Callable[[Path], Path]) -> None:
    """Generate a synthetic dataset at ``root`` with default settings (``generate(root)``) unless
    ``root/categories.json`` marks it complete; ``task`` is its ``--task`` name, ``what`` its description.

    Raises:
        FileExistsError: ``root`` holds something else (the message says how to regenerate it).
    """
    if (root / "categories.json").is_file():
        return
    logger.warning("Synthetic %s dataset not found at %s; generating it now (takes a few seconds).", what, root)
    try:
        generate(root)
    except FileExistsError as e:
        if not (root / "categories.json").is_file():  # not another process finishing it meanwhile
            raise FileExistsError(
                f"{root} exists but is not a complete synthetic dataset (no categories.json). Delete it, or run "
                f"`python -m mask2former_rankseg.data.synthetic --task {task} --out {root} --overwrite`.") from e

"""``python -m mask2former_rankseg.data.synthetic --task {semantic,panoptic,video,vspw} --out DIR``: write one of the
embedded synthetic datasets (deterministic for a seed).

Examples::

    python -m mask2former_rankseg.data.synthetic --task semantic --out datasets/synthetic/sem_seg
    python -m mask2former_rankseg.data.synthetic --task semantic --num-classes 864 --out datasets/synthetic/sem_seg_864
    python -m mask2former_rankseg.data.synthetic --task video --out datasets/synthetic/ytvis
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

from .jobs import load_categories
from .panoptic import generate_panoptic_dataset
from .semantic import generate_semantic_dataset
from .video import generate_vspw_dataset, generate_ytvis_dataset

TASKS = {
    "semantic": "ADE20K-layout semantic segmentation",
    "panoptic": "COCO panoptic format",
    "video": "YouTube-VIS-format video instance segmentation",
    "vspw": "VSPW-layout video semantic segmentation",
}

GENERATORS: Dict[str, Callable[..., Path]] = {
    "semantic": generate_semantic_dataset,
    "panoptic": generate_panoptic_dataset,
    "video": generate_ytvis_dataset,
    "vspw": generate_vspw_dataset,
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
    """Run the command line; returns the exit status (0 written, 2 bad arguments or an occupied ``--out``)."""
    args = _parse_args(argv)
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
        out = GENERATORS[args.task](args.out, size=args.size, seed=args.seed, overwrite=args.overwrite, **options)
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

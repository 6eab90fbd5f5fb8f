"""Embedded synthetic datasets, generated deterministically in seconds, in the on-disk formats of the real ones.

- ``semantic``: ADE20K layout, 108 (or 864) categories, 2-6 objects per image -- :mod:`.semantic`;
- ``panoptic``: COCO panoptic format, 108 thing + 8 stuff categories, repeated categories -- :mod:`.panoptic`;
- ``video`` / ``vspw``: moving, occluding objects in YouTube-VIS format or VSPW layout, 48 categories -- :mod:`.video`.

Many categories, few per image: the regime RankSeg is for. The category tables are in :mod:`.categories`, the
shape drawing in :mod:`.drawing`, the writing machinery (staging folder renamed into place, seeded process-pool
jobs) in :mod:`.jobs`. Every byte of a dataset is a function of its seed and arguments, whatever the number of
writing processes; an interrupted run never leaves a partial dataset at its destination.

Command line: ``python -m mask2former_rankseg.data.synthetic --task {semantic,panoptic,video,vspw} --out DIR``.
The datasets are registered as ``synthetic_*`` by :mod:`mask2former_rankseg.data.datasets.synthetic`, which
generates them under ``$DETECTRON2_DATASETS/synthetic/`` on first use.
"""

from .categories import (
    SyntheticCategory,
    label_encoding,
    panoptic_categories,
    semantic_categories,
    video_categories,
    ytvis_categories,
)
from .jobs import ensure_synthetic_dataset, load_categories
from .panoptic import generate_panoptic_dataset, render_panoptic_sample
from .semantic import generate_semantic_dataset, render_semantic_sample
from .video import VideoScene, generate_vspw_dataset, generate_ytvis_dataset, render_video_scene

__all__ = [
    "SyntheticCategory",
    "VideoScene",
    "ensure_synthetic_dataset",
    "generate_panoptic_dataset",
    "generate_semantic_dataset",
    "generate_vspw_dataset",
    "generate_ytvis_dataset",
    "label_encoding",
    "load_categories",
    "panoptic_categories",
    "render_panoptic_sample",
    "render_semantic_sample",
    "render_video_scene",
    "semantic_categories",
    "video_categories",
    "ytvis_categories",
]

"""VSPW (Video Scene Parsing in the Wild) video semantic segmentation: 124 classes, metadata and the loader.

Layout under ``$DETECTRON2_DATASETS`` (upstream RankSeg's ``vspw.py`` paths)::

    VSPW_480p/data/<video>/origin/<frame>.jpg
    VSPW_480p/data/<video>/mask/<frame>.png     # uint8: 1..124 classes, 0 = "others", 255 = void
    VSPW_480p/{train,val,test}.txt              # one video name per line

Label PNG values follow VSPW: 0 ("others") and 255 (void) are both ignored, class ``v`` (1..124) is contiguous
id ``v - 1`` (:func:`vspw_labels_to_contiguous`, the conversion VSPW's README and upstream's mapper use).

Dataset dicts: ``file_names`` [T paths], ``sem_seg_file_names`` [T paths] (absent when the video has no ``mask``
folder, e.g. the test split), ``length`` T, ``video_id`` (the video's folder name), ``height``, ``width``,
``frame_offset`` (index of the first frame in the video) and ``video_length``. Frames are the stems present in
both ``origin`` and ``mask``, sorted. Training splits give one dict per video; evaluation splits split each video
into clips of ``VSPW_EVAL_CLIP_LENGTH`` frames, as upstream does for ``val`` (the evaluator stitches the clips of
a video back together for the video-consistency metric).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
from PIL import Image

from ...constants import IGNORE_LABEL
from ..catalog import DatasetCatalog, MetadataCatalog
from .sem_seg import dataset_root, update_metadata

__all__ = [
    "VSPW_CLASSES",
    "VSPW_THING_CLASSES",
    "VSPW_EVAL_CLIP_LENGTH",
    "load_vspw",
    "register_all_vspw",
    "register_vspw",
    "vspw_labels_to_contiguous",
]

logger = logging.getLogger(__name__)

VSPW_EVAL_CLIP_LENGTH = 20
"""Frames per dataset dict of an evaluation split (upstream splits ``val`` videos into clips of 20)."""

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")

# VSPW's 124 classes in label order (PNG value v -> index v - 1), upstream's ``stuff_classes``.
VSPW_CLASSES: Tuple[str, ...] = (
    'wall', 'ceiling', 'door', 'stair', 'ladder', 'escalator', 'Playground_slide', 'handrail_or_fence', 'window',
    'rail', 'goal', 'pillar', 'pole', 'floor', 'ground', 'grass', 'sand', 'athletic_field', 'road', 'path',
    'crosswalk', 'building', 'house', 'bridge', 'tower', 'windmill', 'well_or_well_lid', 'other_construction', 'sky',
    'mountain', 'stone', 'wood', 'ice', 'snowfield', 'grandstand', 'sea', 'river', 'lake', 'waterfall', 'water',
    'billboard_or_Bulletin_Board', 'sculpture', 'pipeline', 'flag', 'parasol_or_umbrella', 'cushion_or_carpet',
    'tent', 'roadblock', 'car', 'bus', 'truck', 'bicycle', 'motorcycle', 'wheeled_machine', 'ship_or_boat', 'raft',
    'airplane', 'tyre', 'traffic_light', 'lamp', 'person', 'cat', 'dog', 'horse', 'cattle', 'other_animal', 'tree',
    'flower', 'other_plant', 'toy', 'ball_net', 'backboard', 'skateboard', 'bat', 'ball',
    'cupboard_or_showcase_or_storage_rack', 'box', 'traveling_case_or_trolley_case', 'basket', 'bag_or_package',
    'trash_can', 'cage', 'plate', 'tub_or_bowl_or_pot', 'bottle_or_cup', 'barrel', 'fishbowl', 'bed', 'pillow',
    'table_or_desk', 'chair_or_seat', 'bench', 'sofa', 'shelf', 'bathtub', 'gun', 'commode', 'roaster',
    'other_machine', 'refrigerator', 'washing_machine', 'Microwave_oven', 'fan', 'curtain', 'textiles', 'clothes',
    'painting_or_poster', 'mirror', 'flower_pot_or_vase', 'clock', 'book', 'tool', 'blackboard', 'tissue',
    'screen_or_television', 'computer', 'printer', 'Mobile_phone', 'keyboard', 'other_electronic_product', 'fruit',
    'food', 'instrument', 'train',
)
VSPW_THING_CLASSES: Tuple[str, ...] = VSPW_CLASSES[43:]
"""Upstream's ``thing_classes``: the 81 classes from 'flag' on."""

# name -> (split list relative to VSPW_480p, frames per dict or None for whole videos)
_SPLITS: Dict[str, Tuple[str, Optional[int]]] = {
    "vspw_train": ("train.txt", None),
    "vspw_val": ("val.txt", VSPW_EVAL_CLIP_LENGTH),
    "vspw_test": ("test.txt", VSPW_EVAL_CLIP_LENGTH),
}


def vspw_labels_to_contiguous(raw: np.ndarray, num_classes: int = len(VSPW_CLASSES)) -> np.ndarray:
    """VSPW label PNG values -> contiguous ids: v in 1..num_classes -> v - 1; 0 ("others"), 255 (void) and any
    other value -> ``IGNORE_LABEL``. Returns int64 of ``raw``'s shape."""
    out = raw.astype(np.int64) - 1
    out[(out < 0) | (out >= num_classes)] = IGNORE_LABEL
    return out


def load_vspw(vspw_dir: str | Path, split_file: str | Path, clip_length: Optional[int] = None) -> List[Dict[str, Any]]:
    """Dataset dicts of the videos listed in ``split_file`` (see the module docstring).

    Args:
        vspw_dir: the ``VSPW_480p`` folder (holding ``data/``).
        split_file: text file with one video name per line.
        clip_length: split each video into dicts of at most this many frames (None: one dict per video).
    Raises:
        FileNotFoundError: the split list or a listed video's ``origin`` folder is missing (both named).
    """
    vspw_dir, split_file = Path(vspw_dir), Path(split_file)
    if not split_file.is_file():
        raise FileNotFoundError(f"VSPW split list {split_file} not found; see datasets/README.md (VSPW).")
    videos = [line.strip() for line in split_file.read_text().splitlines() if line.strip()]
    dicts: List[Dict[str, Any]] = []
    empty: List[str] = []
    unlabelled = 0
    for video in videos:
        origin, mask = vspw_dir / "data" / video / "origin", vspw_dir / "data" / video / "mask"
        if not origin.is_dir():
            raise FileNotFoundError(f"{split_file} lists video {video!r} but {origin} does not exist.")
        images = {p.stem: p for p in origin.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS}
        labels = {p.stem: p for p in mask.iterdir() if p.suffix == ".png"} if mask.is_dir() else None
        if labels is None:
            unlabelled += 1
            stems = sorted(images)
        else:
            if len(images) != len(labels):
                logger.warning("VSPW video %s: %d frames and %d label maps; using the %d frames that have both.",
                               video, len(images), len(labels), len(set(images) & set(labels)))
            stems = sorted(set(images) & set(labels))
        if not stems:
            empty.append(video)
            continue
        with Image.open(images[stems[0]]) as first:  # reads the header only
            width, height = first.size
        step = clip_length or len(stems)
        for start in range(0, len(stems), step):
            part = stems[start:start + step]
            record: Dict[str, Any] = {"file_names": [str(images[s]) for s in part], "length": len(part),
                                      "video_id": video, "height": height, "width": width,
                                      "frame_offset": start, "video_length": len(stems)}
            if labels is not None:
                record["sem_seg_file_names"] = [str(labels[s]) for s in part]
            dicts.append(record)
    if empty:
        logger.warning("%s: %d video(s) without frames skipped: %s.", split_file, len(empty), ", ".join(empty[:10]))
    if unlabelled:
        logger.info("%s: %d video(s) have no 'mask' folder (no ground truth).", split_file, unlabelled)
    logger.info("Loaded %d VSPW videos (%d dataset dicts) from %s", len(videos) - len(empty), len(dicts), split_file)
    return dicts


def register_vspw(name: str, paths: Callable[[], Tuple[Path, Path]], clip_length: Optional[int] = None,
                  classes: Tuple[str, ...] = VSPW_CLASSES, initial_paths: Optional[Tuple[Path, Path]] = None,
                  **extra_metadata: Any) -> None:
    """Register a VSPW-layout dataset; ``paths()`` gives (``VSPW_480p`` folder, split list) when it is loaded.

    Metadata: ``stuff_classes``, ``ignore_label=255``, ``evaluator_type="vspw"``, ``vspw_root``, ``text_file``
    (from ``initial_paths``, default ``paths()``, until the dataset is loaded) and ``extra_metadata`` (e.g.
    upstream's ``thing_classes``).
    """
    def load() -> List[Dict[str, Any]]:
        vspw_dir, split_file = paths()
        update_metadata(name, vspw_root=str(vspw_dir), text_file=str(split_file))
        return load_vspw(vspw_dir, split_file, clip_length)

    vspw_dir, split_file = initial_paths if initial_paths is not None else paths()
    DatasetCatalog.register(name, load)
    MetadataCatalog.get(name).set(stuff_classes=list(classes), ignore_label=IGNORE_LABEL, evaluator_type="vspw",
                                  vspw_root=str(vspw_dir), text_file=str(split_file), **extra_metadata)


def register_all_vspw() -> None:
    """Register ``vspw_train``, ``vspw_val`` and ``vspw_test`` (cheap: nothing is read)."""
    for name, (split, clip_length) in _SPLITS.items():
        if name not in DatasetCatalog:
            register_vspw(name, lambda split=split: _builtin_paths(split), clip_length,
                          thing_classes=list(VSPW_THING_CLASSES))


def _builtin_paths(split: str) -> Tuple[Path, Path]:
    return dataset_root() / "VSPW_480p", dataset_root() / "VSPW_480p" / split

"""YouTube-VIS 2019 / 2021 video instance segmentation: categories, metadata and the JSON loader.

Layout under ``$DETECTRON2_DATASETS`` (upstream's ``builtin.py`` paths)::

    ytvis_2019/{train,valid,test}/JPEGImages/<video>/<frame>.jpg
    ytvis_2019/{train,valid,test}.json
    ytvis_2021/...                                    # same layout

The JSON has ``videos`` (``id``, ``file_names`` relative to ``JPEGImages``, ``height``, ``width``, ``length``),
``annotations`` (one per track: ``id``, ``video_id``, ``category_id``, ``iscrowd``, and per frame ``segmentations``
(RLE or polygons, ``None`` where the track is absent), ``bboxes`` and ``areas``) and ``categories``. The ``valid``
and ``test`` JSONs have no annotations (they are scored by the evaluation server).

Dataset dicts (one per video): ``file_names`` [T paths], ``length`` T, ``video_id``, ``height``, ``width`` and
``annotations``: T lists (one per frame) of ``{"id": track id, "category_id": contiguous, "bbox": [x, y, w, h],
"bbox_mode": BOX_MODE_XYWH_ABS, "segmentation": RLE dict or polygons, "iscrowd"}``; a track absent in a frame is
not listed in that frame.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from pycocotools import mask as mask_utils

from ..catalog import DatasetCatalog, MetadataCatalog
from .sem_seg import dataset_root, update_metadata

__all__ = [
    "BOX_MODE_XYWH_ABS",
    "YTVIS_CATEGORIES_2019",
    "YTVIS_CATEGORIES_2021",
    "load_ytvis_json",
    "register_all_ytvis",
    "register_ytvis_instances",
    "ytvis_metadata",
]

logger = logging.getLogger(__name__)

BOX_MODE_XYWH_ABS = 1
"""detectron2's ``BoxMode.XYWH_ABS`` (boxes as x0, y0, width, height in pixels)."""

Category = Tuple[int, str, Tuple[int, int, int]]
"""(dataset id, name, RGB colour)."""

# The 40 YouTube-VIS 2019 categories with upstream's colours.
YTVIS_CATEGORIES_2019: Tuple[Category, ...] = (
    (1, 'person', (220, 20, 60)), (2, 'giant_panda', (0, 82, 0)), (3, 'lizard', (119, 11, 32)),
    (4, 'parrot', (165, 42, 42)), (5, 'skateboard', (134, 134, 103)), (6, 'sedan', (0, 0, 142)),
    (7, 'ape', (255, 109, 65)), (8, 'dog', (0, 226, 252)), (9, 'snake', (5, 121, 0)), (10, 'monkey', (0, 60, 100)),
    (11, 'hand', (250, 170, 30)), (12, 'rabbit', (100, 170, 30)), (13, 'duck', (179, 0, 194)),
    (14, 'cat', (255, 77, 255)), (15, 'cow', (120, 166, 157)), (16, 'fish', (73, 77, 174)),
    (17, 'train', (0, 80, 100)), (18, 'horse', (182, 182, 255)), (19, 'turtle', (0, 143, 149)),
    (20, 'bear', (174, 57, 255)), (21, 'motorbike', (0, 0, 230)), (22, 'giraffe', (72, 0, 118)),
    (23, 'leopard', (255, 179, 240)), (24, 'fox', (0, 125, 92)), (25, 'deer', (209, 0, 151)),
    (26, 'owl', (188, 208, 182)), (27, 'surfboard', (145, 148, 174)), (28, 'airplane', (106, 0, 228)),
    (29, 'truck', (0, 0, 70)), (30, 'zebra', (199, 100, 0)), (31, 'tiger', (166, 196, 102)),
    (32, 'elephant', (110, 76, 0)), (33, 'snowboard', (133, 129, 255)), (34, 'boat', (0, 0, 192)),
    (35, 'shark', (183, 130, 88)), (36, 'mouse', (130, 114, 135)), (37, 'frog', (107, 142, 35)),
    (38, 'eagle', (0, 228, 0)), (39, 'earless_seal', (174, 255, 243)), (40, 'tennis_racket', (255, 208, 186)),
)

# The 40 YouTube-VIS 2021 categories (a different list and order) with upstream's colours.
YTVIS_CATEGORIES_2021: Tuple[Category, ...] = (
    (1, 'airplane', (106, 0, 228)), (2, 'bear', (174, 57, 255)), (3, 'bird', (255, 109, 65)),
    (4, 'boat', (0, 0, 192)), (5, 'car', (0, 0, 142)), (6, 'cat', (255, 77, 255)), (7, 'cow', (120, 166, 157)),
    (8, 'deer', (209, 0, 151)), (9, 'dog', (0, 226, 252)), (10, 'duck', (179, 0, 194)),
    (11, 'earless_seal', (174, 255, 243)), (12, 'elephant', (110, 76, 0)), (13, 'fish', (73, 77, 174)),
    (14, 'flying_disc', (250, 170, 30)), (15, 'fox', (0, 125, 92)), (16, 'frog', (107, 142, 35)),
    (17, 'giant_panda', (0, 82, 0)), (18, 'giraffe', (72, 0, 118)), (19, 'horse', (182, 182, 255)),
    (20, 'leopard', (255, 179, 240)), (21, 'lizard', (119, 11, 32)), (22, 'monkey', (0, 60, 100)),
    (23, 'motorbike', (0, 0, 230)), (24, 'mouse', (130, 114, 135)), (25, 'parrot', (165, 42, 42)),
    (26, 'person', (220, 20, 60)), (27, 'rabbit', (100, 170, 30)), (28, 'shark', (183, 130, 88)),
    (29, 'skateboard', (134, 134, 103)), (30, 'snake', (5, 121, 0)), (31, 'snowboard', (133, 129, 255)),
    (32, 'squirrel', (188, 208, 182)), (33, 'surfboard', (145, 148, 174)), (34, 'tennis_racket', (255, 208, 186)),
    (35, 'tiger', (166, 196, 102)), (36, 'train', (0, 80, 100)), (37, 'truck', (0, 0, 70)),
    (38, 'turtle', (0, 143, 149)), (39, 'whale', (0, 228, 0)), (40, 'zebra', (199, 100, 0)),
)

# name -> (images folder, JSON), relative to $DETECTRON2_DATASETS, as upstream's builtin.py
_SPLITS_2019: Dict[str, Tuple[str, str]] = {
    "ytvis_2019_train": ("ytvis_2019/train/JPEGImages", "ytvis_2019/train.json"),
    "ytvis_2019_val": ("ytvis_2019/valid/JPEGImages", "ytvis_2019/valid.json"),
    "ytvis_2019_train_new": ("ytvis_2019/train/JPEGImages", "ytvis_2019/train_new.json"),
    "ytvis_2019_val_new": ("ytvis_2019/train/JPEGImages", "ytvis_2019/valid_new.json"),
    "ytvis_2019_test": ("ytvis_2019/test/JPEGImages", "ytvis_2019/test.json"),
}
_SPLITS_2021: Dict[str, Tuple[str, str]] = {
    "ytvis_2021_train": ("ytvis_2021/train/JPEGImages", "ytvis_2021/train.json"),
    "ytvis_2021_val": ("ytvis_2021/valid/JPEGImages", "ytvis_2021/valid.json"),
    "ytvis_2021_test": ("ytvis_2021/test/JPEGImages", "ytvis_2021/test.json"),
}


def ytvis_metadata(categories: Sequence[Category]) -> Dict[str, Any]:
    """Upstream's metadata keys: ``thing_classes``, ``thing_colors``, ``thing_dataset_id_to_contiguous_id``."""
    return {
        "thing_classes": [name for _, name, _ in categories],
        "thing_colors": [list(color) for _, _, color in categories],
        "thing_dataset_id_to_contiguous_id": {cid: i for i, (cid, _, _) in enumerate(categories)},
    }


def load_ytvis_json(json_file: str | os.PathLike, image_root: str | os.PathLike,
                    dataset_id_to_contiguous_id: Mapping[int, int]) -> List[Dict[str, Any]]:
    """Read a YouTube-VIS JSON into one dataset dict per video (see the module docstring), sorted by video id.

    Videos without frames are reported (one warning) and skipped. Polygons with fewer than 3 points are dropped,
    uncompressed RLE is compressed (as upstream).

    Raises:
        FileNotFoundError: the JSON, or a frame it references (naming the video and the frame), is missing.
        ValueError: malformed JSON, a category id outside ``dataset_id_to_contiguous_id``, or per-frame lists whose
            length differs from the video's.
    """
    json_file = Path(json_file)
    if not json_file.is_file():
        raise FileNotFoundError(f"YouTube-VIS annotations {json_file} not found; see datasets/README.md.")
    try:
        data = json.loads(json_file.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{json_file} is not valid JSON: {e}") from e
    if not isinstance(data, dict) or "videos" not in data:
        raise ValueError(f"{json_file} has no 'videos' list; is it a YouTube-VIS JSON?")
    image_root = Path(image_root)
    tracks_per_video: Dict[Any, List[Dict]] = {}
    for ann in data.get("annotations") or []:
        tracks_per_video.setdefault(ann.get("video_id"), []).append(ann)

    dicts: List[Dict[str, Any]] = []
    empty: List[Any] = []
    dropped_polygons = 0
    for video in sorted(data["videos"], key=lambda v: v["id"]):
        video_id = video["id"]
        names = video.get("file_names") or []
        length = int(video.get("length", len(names)))
        if length == 0 or not names:
            empty.append(video_id)
            continue
        if len(names) != length:
            raise ValueError(f"{json_file}: video {video_id} has length {length} but {len(names)} file_names.")
        file_names = [str(image_root / name) for name in names]
        missing = [p for p in file_names if not os.path.isfile(p)]
        if missing:
            raise FileNotFoundError(
                f"{json_file}: video {video_id} references frame {missing[0]}, which does not exist "
                f"({len(missing)} of its {length} frames are missing). Check the images folder {image_root}.")
        frames: List[List[Dict[str, Any]]] = [[] for _ in range(length)]
        for ann in tracks_per_video.pop(video_id, []):
            dropped_polygons += _add_track(frames, ann, video, json_file, dataset_id_to_contiguous_id)
        dicts.append({"file_names": file_names, "length": length, "video_id": video_id,
                      "height": int(video["height"]), "width": int(video["width"]), "annotations": frames})
    if empty:
        logger.warning("%s: %d video(s) without frames skipped (video ids %s).", json_file, len(empty),
                       ", ".join(str(v) for v in empty[:10]))
    orphans = sum(len(v) for v in tracks_per_video.values())
    if orphans:
        logger.warning("%s: %d annotation(s) reference no listed video; they are ignored.", json_file, orphans)
    if dropped_polygons:
        logger.warning("%s: %d per-frame segmentation(s) without a valid polygon (>= 3 points) dropped.",
                       json_file, dropped_polygons)
    logger.info("Loaded %d videos in YouTube-VIS format from %s", len(dicts), json_file)
    return dicts


def _add_track(frames: List[List[Dict[str, Any]]], ann: Dict, video: Dict, json_file: Path,
               dataset_id_to_contiguous_id: Mapping[int, int]) -> int:
    """Append track ``ann`` to the frames where it has a segmentation; returns how many frames were dropped for
    having only invalid polygons."""
    video_id, length = video["id"], len(frames)
    category = ann.get("category_id")
    if category not in dataset_id_to_contiguous_id:
        raise ValueError(f"{json_file}: annotation {ann.get('id')} of video {video_id} has category id {category}, "
                         f"which is not one of the dataset's {len(dataset_id_to_contiguous_id)} categories.")
    segmentations = ann.get("segmentations")
    if not isinstance(segmentations, list) or len(segmentations) != length:
        raise ValueError(f"{json_file}: annotation {ann.get('id')} of video {video_id} needs 'segmentations' with "
                         f"one entry per frame ({length}), got "
                         f"{len(segmentations) if isinstance(segmentations, list) else type(segmentations).__name__}.")
    bboxes = ann.get("bboxes") or [None] * length
    dropped = 0
    for t, segm in enumerate(segmentations):
        if not segm:
            continue
        if isinstance(segm, dict):
            if isinstance(segm.get("counts"), list):  # uncompressed RLE -> compressed
                segm = mask_utils.frPyObjects(segm, *segm["size"])
        else:
            segm = [p for p in segm if len(p) % 2 == 0 and len(p) >= 6]
            if not segm:
                dropped += 1
                continue
        bbox = bboxes[t] if t < len(bboxes) and bboxes[t] else _segmentation_bbox(segm)
        frames[t].append({"id": int(ann["id"]), "category_id": dataset_id_to_contiguous_id[category],
                          "iscrowd": int(ann.get("iscrowd", 0)), "bbox": [float(v) for v in bbox],
                          "bbox_mode": BOX_MODE_XYWH_ABS, "segmentation": segm})
    return dropped


def _segmentation_bbox(segm: Any) -> List[float]:
    """[x, y, w, h] of an RLE dict or polygons (for JSONs without ``bboxes``)."""
    if isinstance(segm, dict):
        return [float(v) for v in mask_utils.toBbox(segm)]
    xs = [x for p in segm for x in p[0::2]]
    ys = [y for p in segm for y in p[1::2]]
    return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]


def register_ytvis_instances(name: str, categories: Sequence[Category],
                             paths: Callable[[], Tuple[Path, Path]], evaluator_type: str = "ytvis",
                             initial_paths: Optional[Tuple[Path, Path]] = None) -> None:
    """Register a YouTube-VIS-format dataset; ``paths()`` gives (images folder, JSON) when the dataset is loaded
    (so ``$DETECTRON2_DATASETS`` is read then). Metadata: ``json_file``, ``image_root``, ``evaluator_type`` and
    :func:`ytvis_metadata`; its paths are ``initial_paths`` (default: ``paths()``) until the dataset is loaded."""
    meta = ytvis_metadata(categories)
    mapping = meta["thing_dataset_id_to_contiguous_id"]

    def load() -> List[Dict[str, Any]]:
        image_root, json_file = paths()
        update_metadata(name, image_root=str(image_root), json_file=str(json_file))
        return load_ytvis_json(json_file, image_root, mapping)

    image_root, json_file = initial_paths if initial_paths is not None else paths()
    DatasetCatalog.register(name, load)
    MetadataCatalog.get(name).set(json_file=str(json_file), image_root=str(image_root),
                                  evaluator_type=evaluator_type, **meta)


def _builtin_paths(image_root: str, json_file: str) -> Tuple[Path, Path]:
    return dataset_root() / image_root, dataset_root() / json_file


def register_all_ytvis() -> None:
    """Register upstream's YouTube-VIS 2019 and 2021 splits (cheap: nothing is read)."""
    for splits, categories in ((_SPLITS_2019, YTVIS_CATEGORIES_2019), (_SPLITS_2021, YTVIS_CATEGORIES_2021)):
        for name, (image_root, json_file) in splits.items():
            if name not in DatasetCatalog:
                register_ytvis_instances(name, categories,
                                         lambda i=image_root, j=json_file: _builtin_paths(i, j))

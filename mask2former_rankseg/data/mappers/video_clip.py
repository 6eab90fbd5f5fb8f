"""Pieces shared by the video mappers: frame sampling, clip-consistent augmentation, reading frames.

Frame sampling follows upstream's video mappers (``INPUT.SAMPLING_FRAME_NUM``, ``SAMPLING_FRAME_RANGE``,
``SAMPLING_FRAME_SHUFFLE``, ``SAMPLING_RANDOM``, ``SAMPLING_INTERVAL``). Augmentations are upstream's
``build_augmentation`` list (crop, resize, flip, then ``INPUT.AUGMENTATIONS``); a geometric augmentation marked
"per clip" is sampled once, on the first frame, and the same transform is applied to every frame of the clip, so
a track's masks stay aligned across frames. Resize and flip are per clip with upstream's ``*_by_clip`` settings
(``MIN_SIZE_TRAIN_SAMPLING: choice_by_clip`` / ``range_by_clip``, ``RANDOM_FLIP: flip_by_clip``, as every video
config uses) and per frame otherwise, as upstream. The crop is always per clip (upstream draws it per frame,
which moves a track's masks relative to each other; the issue asks for clip-consistent geometry). Brightness,
contrast and saturation are drawn per frame, as upstream.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..detection_utils import ImageReadError, SizeMismatchError, read_image
from ..transforms import (
    Augmentation,
    RandomBrightness,
    RandomContrast,
    RandomCrop,
    RandomFlip,
    RandomSaturation,
    ResizeShortestEdge,
    Transform,
)

__all__ = [
    "ClipAugmentation",
    "apply_clip_augmentations",
    "build_clip_augmentations",
    "read_video_frames",
    "sample_clip_frames",
]

logger = logging.getLogger(__name__)


def sample_clip_frames(length: int, num_frames: int, frame_range: int, shuffle: bool = False,
                       random_sampling: bool = True, interval: int = 5) -> List[int]:
    """Indices of the ``num_frames`` frames of one training clip of a video of ``length`` frames (np.random).

    ``random_sampling`` (upstream's default): a reference frame r is drawn uniformly; the other ``num_frames - 1``
    are drawn with replacement among the frames within ``frame_range`` of r (r itself excluded; r repeated when a
    video has a single frame). Otherwise, ``num_frames`` frames ``interval`` apart from a random start (wrapping
    around the video). The indices are sorted, then shuffled when ``shuffle``.
    """
    if length < 1 or num_frames < 1:
        raise ValueError(f"Cannot sample {num_frames} frames from a video of {length} frames.")
    if random_sampling:
        ref = int(np.random.randint(length))
        candidates = [*range(max(0, ref - frame_range), ref), *range(ref + 1, min(length, ref + frame_range + 1))]
        others = (np.random.choice(candidates, num_frames - 1).tolist() if candidates else [ref] * (num_frames - 1))
        selected = sorted(int(i) for i in [*others, ref])
    else:
        if interval < 1:
            raise ValueError(f"INPUT.SAMPLING_INTERVAL must be >= 1 without random sampling, got {interval}.")
        offset = int(np.random.randint(interval))
        start = int(np.random.randint(max((length - offset) // interval - num_frames + 2, 1)))
        selected = sorted(((start + i) * interval + offset) % length for i in range(num_frames))
    if shuffle:
        np.random.shuffle(selected)
    return selected


@dataclass
class ClipAugmentation:
    """An augmentation and whether one transform is sampled for the whole clip (``per_clip``) or per frame."""

    augmentation: Union[Augmentation, Transform]
    per_clip: bool


def build_clip_augmentations(cfg, is_train: bool) -> List[ClipAugmentation]:
    """Upstream's video ``build_augmentation`` (see the module docstring for per-clip/per-frame).

    Training: ``RandomCrop(CROP.TYPE, CROP.SIZE)`` if ``CROP.ENABLED``; ``ResizeShortestEdge(MIN_SIZE_TRAIN,
    MAX_SIZE_TRAIN)``; ``RandomFlip`` unless ``RANDOM_FLIP == "none"``; then brightness / contrast / saturation
    (0.9-1.1) named in ``INPUT.AUGMENTATIONS``. Test: ``ResizeShortestEdge(MIN_SIZE_TEST, MAX_SIZE_TEST)``.
    """
    inp = cfg.INPUT
    if not is_train:
        return [ClipAugmentation(ResizeShortestEdge(inp.MIN_SIZE_TEST, inp.MAX_SIZE_TEST, "choice"), True)]
    augs: List[ClipAugmentation] = []
    if inp.CROP.ENABLED:
        augs.append(ClipAugmentation(RandomCrop(inp.CROP.TYPE, inp.CROP.SIZE), True))
    style = inp.MIN_SIZE_TRAIN_SAMPLING
    styles = ("range", "choice", "range_by_clip", "choice_by_clip")
    if style not in styles:
        raise ValueError(f"INPUT.MIN_SIZE_TRAIN_SAMPLING={style!r}; the video mappers support {styles}.")
    augs.append(ClipAugmentation(
        ResizeShortestEdge(inp.MIN_SIZE_TRAIN, inp.MAX_SIZE_TRAIN, style.replace("_by_clip", "")),
        style.endswith("_by_clip")))
    flips = ("none", "horizontal", "vertical", "flip_by_clip")
    if inp.RANDOM_FLIP not in flips:
        raise ValueError(f"INPUT.RANDOM_FLIP={inp.RANDOM_FLIP!r}; expected one of {flips}.")
    if inp.RANDOM_FLIP != "none":
        vertical = inp.RANDOM_FLIP == "vertical"
        augs.append(ClipAugmentation(RandomFlip(horizontal=not vertical, vertical=vertical),
                                     inp.RANDOM_FLIP == "flip_by_clip"))
    photometric = {"brightness": RandomBrightness, "contrast": RandomContrast, "saturation": RandomSaturation}
    unknown = [a for a in inp.AUGMENTATIONS if a not in photometric]
    if unknown:
        raise ValueError(f"INPUT.AUGMENTATIONS {unknown} are not supported by the video mappers; supported: "
                         f"{sorted(photometric)} (upstream's 'rotation' is not implemented).")
    for name in ("brightness", "contrast", "saturation"):  # upstream's order
        if name in inp.AUGMENTATIONS:
            augs.append(ClipAugmentation(photometric[name](0.9, 1.1), False))
    return augs


def apply_clip_augmentations(augmentations: Sequence[ClipAugmentation], frames: Sequence[np.ndarray],
                             maps: Optional[Sequence[Sequence[np.ndarray]]] = None
                             ) -> Tuple[List[np.ndarray], List[List[np.ndarray]]]:
    """Augment the frames of one clip and their label maps.

    Args:
        augmentations: in order; a per-clip one samples its transform on the first frame (as transformed so far)
            and reuses it for the others.
        frames: T images [H, W, C] uint8 (all of one size).
        maps: optional, per frame a list of [H, W] integer maps (label maps, instance masks) transformed as
            segmentations with their frame.
    Returns:
        (T augmented frames, per frame the augmented maps).
    """
    maps = [list(m) for m in maps] if maps is not None else [[] for _ in frames]
    clip_transforms: Dict[int, Transform] = {}
    out_frames, out_maps = [], []
    for image, frame_maps in zip(frames, maps):
        for i, aug in enumerate(augmentations):
            if aug.per_clip and i in clip_transforms:
                tfm = clip_transforms[i]
            elif isinstance(aug.augmentation, Augmentation):
                tfm = aug.augmentation.get_transform(image)
            else:
                tfm = aug.augmentation
            if aug.per_clip:
                clip_transforms[i] = tfm
            image = tfm.apply_image(image)
            frame_maps = [tfm.apply_segmentation(m) for m in frame_maps]
        out_frames.append(image)
        out_maps.append(frame_maps)
    return out_frames, out_maps


def read_video_frames(dataset_dict: Dict[str, Any], indices: Sequence[int], key: str = "file_names",
                      image_format: Optional[str] = None) -> List[np.ndarray]:
    """Read frames ``indices`` of the video's ``dataset_dict[key]`` (frames, or label maps with ``format=None``).

    Every frame must have the video's size (``height``/``width`` of the dict, else the first frame's, which is
    then filled in).

    Raises:
        KeyError: the dict has no ``key``.
        ImageReadError: a frame is missing or unreadable (naming the video, the frame index and the file).
        SizeMismatchError: a frame's size differs from the video's (naming the video, the frame and both sizes).
    """
    video = dataset_dict.get("video_id", "?")
    if key not in dataset_dict:
        raise KeyError(f"Dataset dict of video {video} has no {key!r}.")
    paths = dataset_dict[key]
    out = []
    for idx in indices:
        try:
            array = read_image(paths[idx], format=image_format)
        except ImageReadError as e:
            raise ImageReadError(f"Video {video}, frame {idx}: {e}") from e
        size = tuple(array.shape[:2])
        if "height" not in dataset_dict or "width" not in dataset_dict:
            dataset_dict["height"], dataset_dict["width"] = size
        expected = (dataset_dict["height"], dataset_dict["width"])
        if size != expected:
            raise SizeMismatchError(
                f"Video {video}, frame {idx} ({paths[idx]}) has size (h, w)={size} but the video is {expected} "
                "(its dataset dict / first frame); all frames and label maps of a video must have one size.")
        out.append(array)
    return out

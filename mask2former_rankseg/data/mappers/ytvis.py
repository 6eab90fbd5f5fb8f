"""YouTube-VIS video mapper (upstream's ``YTVISDatasetMapper``): a video dict -> one clip of model input."""

from __future__ import annotations

import copy
import logging
from typing import Any, Dict, List, Sequence

import numpy as np
import torch

from ...structures import Instances
from .instance import segmentation_to_mask
from .video_clip import (
    ClipAugmentation,
    apply_clip_augmentations,
    build_clip_augmentations,
    read_video_frames,
    sample_clip_frames,
)

__all__ = ["YTVISDatasetMapper", "clip_tracks_to_instances"]

logger = logging.getLogger(__name__)


class YTVISDatasetMapper:
    """Reads a clip of a YouTube-VIS video dict and builds per-frame ``Instances`` of its tracks.

    Training: ``sampling_frame_num`` frames (see :func:`sample_clip_frames`), clip-consistent augmentations.
    Inference: every frame, resized. Output (the video contract): ``image`` [T uint8 [C, H, W]], ``file_names``
    (of the clip's frames), ``frame_indices``, ``video_id``, ``length`` (of the video), ``height``/``width``
    (original) and, when training or with ``with_gt``, ``instances`` [T Instances] with ``gt_ids`` [N] (track id,
    -1 where absent), ``gt_classes`` [N] (contiguous) and ``gt_masks`` [N, H, W] bool (see
    :func:`clip_tracks_to_instances`).

    Args:
        is_train: training (sampled clip, annotations needed) or inference (whole video).
        augmentations: see :func:`build_clip_augmentations`.
        image_format: "RGB" or "BGR".
        sampling_frame_num, sampling_frame_range, sampling_frame_shuffle, sampling_random, sampling_interval:
            upstream's ``INPUT.SAMPLING_*``.
        with_gt: at inference, also build ``instances`` (the RankSeg oracle, ``MODEL.RANKSEG.USE_GT``).
    """

    def __init__(self, is_train: bool, *, augmentations: Sequence[ClipAugmentation], image_format: str,
                 sampling_frame_num: int = 2, sampling_frame_range: int = 5, sampling_frame_shuffle: bool = False,
                 sampling_random: bool = True, sampling_interval: int = 5, with_gt: bool = False):
        self.is_train = is_train
        self.augmentations = list(augmentations)
        self.image_format = image_format
        self.sampling_frame_num = int(sampling_frame_num)
        self.sampling_frame_range = int(sampling_frame_range)
        self.sampling_frame_shuffle = bool(sampling_frame_shuffle)
        self.sampling_random = bool(sampling_random)
        self.sampling_interval = int(sampling_interval)
        self.with_gt = bool(with_gt)
        logger.info("[%s] Augmentations used in %s: %s", type(self).__name__, "training" if is_train else "inference",
                    self.augmentations)

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        return cls(is_train, augmentations=build_clip_augmentations(cfg, is_train), image_format=cfg.INPUT.FORMAT,
                   sampling_frame_num=cfg.INPUT.SAMPLING_FRAME_NUM, sampling_frame_range=cfg.INPUT.SAMPLING_FRAME_RANGE,
                   sampling_frame_shuffle=cfg.INPUT.SAMPLING_FRAME_SHUFFLE, sampling_random=cfg.INPUT.SAMPLING_RANDOM,
                   sampling_interval=cfg.INPUT.SAMPLING_INTERVAL, with_gt=cfg.MODEL.RANKSEG.USE_GT)

    def frame_indices(self, length: int) -> List[int]:
        """Frames of the clip: a sampled clip in training, every frame at inference."""
        if not self.is_train:
            return list(range(length))
        return sample_clip_frames(length, self.sampling_frame_num, self.sampling_frame_range,
                                  self.sampling_frame_shuffle, self.sampling_random, self.sampling_interval)

    def __call__(self, dataset_dict: Dict[str, Any]) -> Dict[str, Any]:
        dataset_dict = copy.deepcopy(dataset_dict)
        video = dataset_dict.get("video_id")
        annotations = dataset_dict.pop("annotations", None)
        file_names = dataset_dict["file_names"]
        indices = self.frame_indices(int(dataset_dict["length"]))
        need_gt = self.is_train or self.with_gt
        if need_gt and annotations is None:
            raise ValueError(f"Video {video} has no 'annotations'; "
                             f"{'training' if self.is_train else 'MODEL.RANKSEG.USE_GT'} needs them.")
        frames = read_video_frames(dataset_dict, indices, image_format=self.image_format)
        h, w = dataset_dict["height"], dataset_dict["width"]
        masks, track_ids, track_classes = [], [], []
        if need_gt:
            track_ids, track_classes = _clip_tracks(annotations, indices, video)
            masks = [_frame_masks(annotations[i], track_ids, h, w, f"video {video}, frame {i}") for i in indices]
        frames, masks = apply_clip_augmentations(self.augmentations, frames, masks if need_gt else None)
        dataset_dict["image"] = [torch.as_tensor(np.ascontiguousarray(f.transpose(2, 0, 1))) for f in frames]
        dataset_dict["file_names"] = [file_names[i] for i in indices]
        dataset_dict["frame_indices"] = indices
        if need_gt:
            dataset_dict["instances"] = [clip_tracks_to_instances(m, track_ids, track_classes, f.shape[:2])
                                         for m, f in zip(masks, frames)]
        return dataset_dict


def _clip_tracks(annotations: Sequence[Sequence[Dict]], indices: Sequence[int], video: Any):
    """Sorted ids of the non-crowd tracks present in any frame of the clip, and their categories."""
    category: Dict[int, int] = {}
    for i in indices:
        for ann in annotations[i]:
            if ann.get("iscrowd", 0):
                continue
            tid, cls = int(ann["id"]), int(ann["category_id"])
            if category.setdefault(tid, cls) != cls:
                raise ValueError(f"Video {video}: track {tid} has categories {category[tid]} and {cls} in "
                                 "different frames; a track keeps one category.")
    ids = sorted(category)
    return ids, [category[t] for t in ids]


def _frame_masks(frame_annotations: Sequence[Dict], track_ids: Sequence[int], h: int, w: int,
                 source: str) -> List[np.ndarray]:
    """[H, W] uint8 mask of every clip track in one frame (all zero where the track is absent)."""
    by_id = {int(a["id"]): a for a in frame_annotations if not a.get("iscrowd", 0)}
    return [segmentation_to_mask(by_id[t]["segmentation"], h, w, source) if t in by_id
            else np.zeros((h, w), dtype=np.uint8) for t in track_ids]


def clip_tracks_to_instances(masks: Sequence[np.ndarray], track_ids: Sequence[int], track_classes: Sequence[int],
                             image_size) -> Instances:
    """One frame's ``Instances`` of the clip's N tracks (same tracks, same order in every frame).

    Args:
        masks: N [H, W] masks of this frame (after augmentation).
        track_ids, track_classes: the N tracks' ids and contiguous categories.
    Returns:
        ``gt_ids`` int64 [N] (-1 where the mask is empty: the track is absent or was cropped away, as upstream's
        ``filter_empty_instances``), ``gt_classes`` int64 [N], ``gt_masks`` bool [N, H, W].
    """
    if len(masks):
        gt_masks = torch.as_tensor(np.stack([np.ascontiguousarray(m) for m in masks])).bool()
    else:
        gt_masks = torch.zeros((0, *image_size), dtype=torch.bool)
    ids = torch.tensor(list(track_ids), dtype=torch.int64)
    ids = torch.where(gt_masks.flatten(1).any(1), ids, torch.full_like(ids, -1)) if len(ids) else ids
    return Instances(tuple(image_size), gt_ids=ids, gt_classes=torch.tensor(list(track_classes), dtype=torch.int64),
                     gt_masks=gt_masks)

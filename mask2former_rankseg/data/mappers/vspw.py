"""VSPW video mapper (upstream's ``VSPWDatasetMapper``): a video dict -> one clip with label maps and per-class
"tracks"."""

from __future__ import annotations

import copy
import logging
from typing import Any, Dict, List, Sequence

import numpy as np
import torch

from ...constants import IGNORE_LABEL
from ..datasets.vspw import vspw_labels_to_contiguous
from .video_clip import ClipAugmentation, apply_clip_augmentations, build_clip_augmentations, read_video_frames
from .ytvis import YTVISDatasetMapper, clip_tracks_to_instances

__all__ = ["VSPWDatasetMapper"]

logger = logging.getLogger(__name__)


class VSPWDatasetMapper(YTVISDatasetMapper):
    """Reads a clip of a VSPW video dict: frames and label maps (VSPW values -> contiguous, 0 and 255 ignored).

    Frame sampling and augmentations as :class:`YTVISDatasetMapper` (the label maps are transformed with their
    frames). Output: ``image`` [T], ``file_names``, ``sem_seg_file_names`` and ``frame_indices`` of the clip,
    ``video_id``, ``height``/``width`` and, when training or with ``with_gt``, ``sem_seg`` [T int64 [H, W]]
    (255 = ignore) and ``instances`` [T Instances]: one "track" per class present anywhere in the clip (classes
    ascending, as upstream), ``gt_classes`` = ``gt_ids`` = the class (``gt_ids`` -1 in frames without it),
    ``gt_masks`` [N, H, W] bool.

    Args:
        num_classes: label values above it (and 0, 255) become ignore.
        (others as :class:`YTVISDatasetMapper`)
    """

    def __init__(self, is_train: bool, *, augmentations: Sequence[ClipAugmentation], image_format: str,
                 num_classes: int = 124, **sampling: Any):
        super().__init__(is_train, augmentations=augmentations, image_format=image_format, **sampling)
        self.num_classes = int(num_classes)

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        inp = cfg.INPUT
        return cls(is_train, augmentations=build_clip_augmentations(cfg, is_train), image_format=inp.FORMAT,
                   num_classes=cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES, sampling_frame_num=inp.SAMPLING_FRAME_NUM,
                   sampling_frame_range=inp.SAMPLING_FRAME_RANGE, sampling_frame_shuffle=inp.SAMPLING_FRAME_SHUFFLE,
                   sampling_random=inp.SAMPLING_RANDOM, sampling_interval=inp.SAMPLING_INTERVAL,
                   with_gt=cfg.MODEL.RANKSEG.USE_GT)

    def __call__(self, dataset_dict: Dict[str, Any]) -> Dict[str, Any]:
        dataset_dict = copy.deepcopy(dataset_dict)
        video = dataset_dict.get("video_id")
        indices = self.frame_indices(int(dataset_dict["length"]))
        need_gt = self.is_train or self.with_gt
        if need_gt and "sem_seg_file_names" not in dataset_dict:
            raise ValueError(f"VSPW video {video} has no label maps ('sem_seg_file_names'); "
                             f"{'training' if self.is_train else 'MODEL.RANKSEG.USE_GT'} needs them.")
        frames = read_video_frames(dataset_dict, indices, image_format=self.image_format)
        labels: List[List[np.ndarray]] = []
        if need_gt:
            for i, raw in zip(indices, read_video_frames(dataset_dict, indices, key="sem_seg_file_names")):
                if raw.ndim != 2:
                    raise ValueError(f"Video {video}, frame {i}: label map {dataset_dict['sem_seg_file_names'][i]} "
                                     f"has shape {raw.shape}; expected a single-channel [H, W] PNG.")
                labels.append([vspw_labels_to_contiguous(raw, self.num_classes)])
        frames, labels = apply_clip_augmentations(self.augmentations, frames, labels if need_gt else None)
        dataset_dict["image"] = [torch.as_tensor(np.ascontiguousarray(f.transpose(2, 0, 1))) for f in frames]
        for key in ("file_names", "sem_seg_file_names"):
            if key in dataset_dict:
                dataset_dict[key] = [dataset_dict[key][i] for i in indices]
        dataset_dict["frame_indices"] = indices
        if need_gt:
            sem_seg = [torch.as_tensor(np.ascontiguousarray(m[0]), dtype=torch.int64) for m in labels]
            classes = torch.unique(torch.cat([s.flatten() for s in sem_seg]))
            classes = classes[classes != IGNORE_LABEL].tolist()
            dataset_dict["sem_seg"] = sem_seg
            dataset_dict["instances"] = [
                clip_tracks_to_instances([(s == c).numpy() for c in classes], classes, classes, s.shape)
                for s in sem_seg]
        return dataset_dict

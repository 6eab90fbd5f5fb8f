"""Training mapper for semantic segmentation in Mask2Former's format (one mask per present class)."""

from __future__ import annotations

import copy
import logging
import math
from typing import Any, Dict, List, Sequence, Union

import numpy as np
import torch
from torch.nn import functional as F

from ...structures import Instances
from ..catalog import MetadataCatalog
from ..detection_utils import check_image_size, read_image
from ..transforms import (
    Augmentation,
    ColorAugSSDTransform,
    PhotoMetricDistortion,
    RandomCrop_CategoryAreaConstraint,
    RandomCropCatMaxRatio,
    RandomFlip,
    RatioRangeResize,
    ResizeShortestEdge,
    Transform,
    apply_augmentations,
)

__all__ = ["MaskFormerSemanticDatasetMapper", "semantic_training_augmentations"]

logger = logging.getLogger(__name__)

# Upstream pads the image with 128 (about the pixel mean) before normalisation. mmsegmentation pads its crop to
# the crop size with 0 *after* normalisation, i.e. with the exact pixel mean (123.675, 116.28, 103.53), which a
# uint8 image cannot hold; the labels are padded with the ignore label in both (set SIZE_DIVISIBILITY to the
# crop size to pad to it, as mmseg's ``Pad(size=crop_size)``).
IMAGE_PAD_VALUE = 128

RESIZE_TYPES = ("shortest_edge", "ratio_range")
AUGMENTATION_STYLES = ("detectron2", "mmseg")


def semantic_training_augmentations(cfg) -> List[Union[Augmentation, Transform]]:
    """The semantic training augmentations that ``cfg`` asks for.

    The resize is ``INPUT.RESIZE.TYPE``'s: ``"shortest_edge"`` (detectron2's ResizeShortestEdge, upstream's) or
    ``"ratio_range"`` (mmseg's Resize with ``INPUT.RESIZE.SCALE``, ``INPUT.RESIZE.RATIO_RANGE``). Then, by
    ``INPUT.AUGMENTATION_STYLE``: ``"detectron2"`` -> the category-area crop (``INPUT.CROP.*``),
    ColorAugSSDTransform (``INPUT.COLOR_AUG_SSD``), the flip; ``"mmseg"`` -> mmseg's RandomCrop with
    ``cat_max_ratio`` (``INPUT.CROP.*``, TYPE "absolute"), the flip, PhotoMetricDistortion (``INPUT.COLOR_AUG_SSD``).
    The crop ignores ``MODEL.SEM_SEG_HEAD.IGNORE_VALUE``.

    Raises:
        ValueError: an unknown TYPE or STYLE, or the mmseg style with a crop TYPE other than "absolute".
    """
    resize_type, style = cfg.INPUT.RESIZE.TYPE, cfg.INPUT.AUGMENTATION_STYLE
    if resize_type not in RESIZE_TYPES:
        raise ValueError(f"INPUT.RESIZE.TYPE is {resize_type!r}; use one of {RESIZE_TYPES}.")
    if style not in AUGMENTATION_STYLES:
        raise ValueError(f"INPUT.AUGMENTATION_STYLE is {style!r}; use one of {AUGMENTATION_STYLES}.")
    if resize_type == "shortest_edge":
        resize = ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN,
                                    cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING)
    else:
        resize = RatioRangeResize(cfg.INPUT.RESIZE.SCALE, cfg.INPUT.RESIZE.RATIO_RANGE)
    augs: List[Union[Augmentation, Transform]] = [resize]
    crop = cfg.INPUT.CROP
    ignore_value = cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE
    if style == "detectron2":
        if crop.ENABLED:
            augs.append(RandomCrop_CategoryAreaConstraint(crop.TYPE, crop.SIZE, crop.SINGLE_CATEGORY_MAX_AREA,
                                                          ignore_value))
        if cfg.INPUT.COLOR_AUG_SSD:
            augs.append(ColorAugSSDTransform(img_format=cfg.INPUT.FORMAT))
        augs.append(RandomFlip())
        return augs
    if crop.ENABLED:
        if crop.TYPE != "absolute":
            raise ValueError(f"INPUT.AUGMENTATION_STYLE 'mmseg' crops a fixed size: set INPUT.CROP.TYPE to "
                             f"'absolute' (it is {crop.TYPE!r}) and INPUT.CROP.SIZE to (h, w) in pixels.")
        augs.append(RandomCropCatMaxRatio(crop.SIZE, crop.SINGLE_CATEGORY_MAX_AREA, ignore_value))
    augs.append(RandomFlip())
    if cfg.INPUT.COLOR_AUG_SSD:
        augs.append(PhotoMetricDistortion(cfg.INPUT.FORMAT))
    return augs


class MaskFormerSemanticDatasetMapper:
    """Reads, augments and pads one training image and its label map; builds per-class masks.

    Args:
        is_train: must be True (use :class:`InferenceDatasetMapper` for evaluation).
        augmentations: applied in order to image and label map.
        image_format: "RGB" or "BGR" (or "L"), the channel order of the output image.
        ignore_label: label of unannotated pixels; excluded from ``instances``, used for padding.
        size_divisibility: when > 0, pad bottom/right to the next multiple of it (upstream pads to
            exactly ``size_divisibility``, which is the same for crops no larger than it).
    """

    def __init__(self, is_train: bool = True, *, augmentations: Sequence[Union[Augmentation, Transform]],
                 image_format: str, ignore_label: int, size_divisibility: int):
        if not is_train:
            raise ValueError(
                "MaskFormerSemanticDatasetMapper is for training only; use InferenceDatasetMapper for evaluation."
            )
        self.is_train = is_train
        self.augmentations = list(augmentations)
        self.image_format = image_format
        self.ignore_label = int(ignore_label)
        self.size_divisibility = int(size_divisibility)
        logger.info("[%s] Augmentations used in training: %s", type(self).__name__, self.augmentations)

    @classmethod
    def from_config(cls, cfg, is_train: bool = True) -> MaskFormerSemanticDatasetMapper:
        """Augmentations from :func:`semantic_training_augmentations` (upstream's by default); the ignore label
        comes from the first training dataset."""
        augs = semantic_training_augmentations(cfg)
        if len(cfg.DATASETS.TRAIN) == 0:
            raise ValueError("cfg.DATASETS.TRAIN is empty; MaskFormerSemanticDatasetMapper needs a training dataset.")
        meta = MetadataCatalog.get(cfg.DATASETS.TRAIN[0])
        ignore_label = meta.get("ignore_label")
        if ignore_label is None:
            raise ValueError(
                f"Dataset {cfg.DATASETS.TRAIN[0]!r} has no 'ignore_label' in its metadata; is it registered "
                "(e.g. by importing mask2former_rankseg.data)?"
            )
        return cls(
            is_train,
            augmentations=augs,
            image_format=cfg.INPUT.FORMAT,
            ignore_label=ignore_label,
            size_divisibility=cfg.INPUT.SIZE_DIVISIBILITY,
        )

    def __call__(self, dataset_dict: Dict[str, Any]) -> Dict[str, Any]:
        """Map one dataset dict.

        Returns:
            A copy of ``dataset_dict`` plus ``image`` (uint8 [C, H, W]), ``sem_seg`` (int64 [H, W]) and
            ``instances`` (``gt_classes`` int64 [N], ``gt_masks`` bool [N, H, W]; one per class present).
        """
        dataset_dict = copy.deepcopy(dataset_dict)
        if "sem_seg_file_name" not in dataset_dict:
            raise ValueError(
                f"Dataset dict of {dataset_dict.get('file_name', dataset_dict)!r} has no 'sem_seg_file_name'; "
                "semantic segmentation training needs a label map for every image."
            )
        if "annotations" in dataset_dict:
            raise ValueError(
                f"Dataset dict of {dataset_dict.get('file_name')!r} has 'annotations'; a semantic segmentation "
                "dataset should only have 'sem_seg_file_name'."
            )
        image = read_image(dataset_dict["file_name"], format=self.image_format)
        sem_seg = read_image(dataset_dict["sem_seg_file_name"])
        if sem_seg.ndim != 2:
            raise ValueError(
                f"Annotation {dataset_dict['sem_seg_file_name']} has shape {sem_seg.shape}; expected a "
                "single-channel [H, W] label map."
            )
        check_image_size(dataset_dict, image, sem_seg)

        image, sem_seg = apply_augmentations(self.augmentations, image, sem_seg)
        image_t = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        sem_seg_t = torch.as_tensor(sem_seg.astype(np.int64))
        if self.size_divisibility > 0:
            image_t, sem_seg_t = self._pad(image_t, sem_seg_t)

        dataset_dict["image"] = image_t
        dataset_dict["sem_seg"] = sem_seg_t
        dataset_dict["instances"] = semantic_to_instances(sem_seg_t, self.ignore_label)
        return dataset_dict

    def _pad(self, image: torch.Tensor, sem_seg: torch.Tensor):
        h, w = image.shape[-2:]
        d = self.size_divisibility
        pad = [0, math.ceil(w / d) * d - w, 0, math.ceil(h / d) * d - h]  # left, right, top, bottom
        image = F.pad(image, pad, value=IMAGE_PAD_VALUE).contiguous()
        sem_seg = F.pad(sem_seg, pad, value=self.ignore_label).contiguous()
        return image, sem_seg


def semantic_to_instances(sem_seg: torch.Tensor, ignore_label: int) -> Instances:
    """One binary mask per class present in ``sem_seg`` [H, W] (ignore excluded), classes ascending.

    Returns:
        Instances with ``gt_classes`` int64 [N] and ``gt_masks`` bool [N, H, W].
    """
    classes = torch.unique(sem_seg)
    classes = classes[classes != ignore_label].to(torch.int64)
    masks = sem_seg[None] == classes[:, None, None]
    return Instances(tuple(sem_seg.shape), gt_classes=classes, gt_masks=masks)

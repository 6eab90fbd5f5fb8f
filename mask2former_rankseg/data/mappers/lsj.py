"""COCO large-scale-jitter ("new baseline") mappers: flip, ResizeScale, FixedSizeCrop, pad to a square.

``INPUT.DATASET_MAPPER_NAME``: ``coco_panoptic_lsj`` / ``coco_instance_lsj``; keys ``INPUT.IMAGE_SIZE``,
``INPUT.MIN_SCALE``, ``INPUT.MAX_SCALE``, ``INPUT.RANDOM_FLIP`` (upstream's).
"""

from __future__ import annotations

from typing import List

from ...constants import IGNORE_LABEL
from ..transforms import Augmentation, FixedSizeCrop, RandomFlip, ResizeScale
from .instance import MaskFormerInstanceDatasetMapper
from .panoptic import MaskFormerPanopticDatasetMapper

__all__ = ["COCOInstanceNewBaselineDatasetMapper", "COCOPanopticNewBaselineDatasetMapper", "lsj_augmentations"]


def lsj_augmentations(cfg) -> List[Augmentation]:
    """Upstream's large-scale jitter: optional flip, ResizeScale(MIN_SCALE, MAX_SCALE) of an IMAGE_SIZE square,
    FixedSizeCrop to IMAGE_SIZE (the mappers then pad to IMAGE_SIZE)."""
    size = cfg.INPUT.IMAGE_SIZE
    augs: List[Augmentation] = []
    if cfg.INPUT.RANDOM_FLIP != "none":
        augs.append(RandomFlip(horizontal=cfg.INPUT.RANDOM_FLIP == "horizontal",
                               vertical=cfg.INPUT.RANDOM_FLIP == "vertical"))
    augs += [ResizeScale(cfg.INPUT.MIN_SCALE, cfg.INPUT.MAX_SCALE, size, size), FixedSizeCrop((size, size))]
    return augs


class COCOPanopticNewBaselineDatasetMapper(MaskFormerPanopticDatasetMapper):
    """:class:`MaskFormerPanopticDatasetMapper` with large-scale jitter; images padded to IMAGE_SIZE squares."""

    @classmethod
    def from_config(cls, cfg, is_train: bool = True) -> COCOPanopticNewBaselineDatasetMapper:
        return cls(is_train, augmentations=lsj_augmentations(cfg), image_format=cfg.INPUT.FORMAT,
                   ignore_label=IGNORE_LABEL, size_divisibility=cfg.INPUT.IMAGE_SIZE)


class COCOInstanceNewBaselineDatasetMapper(MaskFormerInstanceDatasetMapper):
    """:class:`MaskFormerInstanceDatasetMapper` with large-scale jitter; objects the crop removes entirely are
    dropped (as upstream's ``filter_empty_instances``)."""

    drop_empty = True

    @classmethod
    def from_config(cls, cfg, is_train: bool = True) -> COCOInstanceNewBaselineDatasetMapper:
        return cls(is_train, augmentations=lsj_augmentations(cfg), image_format=cfg.INPUT.FORMAT,
                   ignore_label=IGNORE_LABEL, size_divisibility=cfg.INPUT.IMAGE_SIZE)

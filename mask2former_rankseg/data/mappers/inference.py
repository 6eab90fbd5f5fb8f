"""Test-time mapper: read the image and resize its shorter side; labels stay on disk for evaluators."""

from __future__ import annotations

import copy
import logging
import sys
from typing import Any, Dict, Optional, Sequence, Union

import numpy as np
import torch

from ...constants import IGNORE_LABEL
from ...structures import Instances
from ..catalog import MetadataCatalog
from ..detection_utils import check_image_size, read_image
from ..transforms import ResizeShortestEdge, apply_augmentations
from .semantic import semantic_to_instances

__all__ = ["InferenceDatasetMapper"]

logger = logging.getLogger(__name__)


class InferenceDatasetMapper:
    """Reads one image and resizes it (shorter side ``min_size``, longer side <= ``max_size``).

    Args:
        min_size: shorter-side length (an int; a sequence is treated as choices, like detectron2).
        max_size: cap on the longer side.
        image_format: "RGB", "BGR" or "L", channel order of the output image.
        load_gt: add ``instances`` for the RankSeg ground-truth oracle (``MODEL.RANKSEG.USE_GT``): for panoptic data
            (``segments_info``) ``gt_classes`` of its non-crowd segments, as upstream's test mapper; otherwise
            ``gt_classes`` and ``gt_masks`` of the resized ``sem_seg_file_name``.
        ignore_label: label of unlabelled pixels in the label maps (with ``load_gt``).
    """

    def __init__(self, *, min_size: Union[int, Sequence[int]], max_size: int = sys.maxsize, image_format: str,
                 load_gt: bool = False, ignore_label: int = IGNORE_LABEL):
        self.resize = ResizeShortestEdge(min_size, max_size, "choice")
        self.image_format = image_format
        self.load_gt = load_gt
        self.ignore_label = ignore_label
        logger.info("[%s] Resize used in inference: %s", type(self).__name__, self.resize)

    @classmethod
    def from_config(cls, cfg, dataset_name: Optional[str] = None) -> InferenceDatasetMapper:
        """The ignore label is the ``ignore_label`` of ``dataset_name``'s metadata when it has one (e.g. 65535 for
        16-bit label maps), else ``MODEL.SEM_SEG_HEAD.IGNORE_VALUE``."""
        ignore_label = cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE
        if dataset_name is not None:
            ignore_label = MetadataCatalog.get(dataset_name).get("ignore_label", ignore_label)
        return cls(min_size=cfg.INPUT.MIN_SIZE_TEST, max_size=cfg.INPUT.MAX_SIZE_TEST, image_format=cfg.INPUT.FORMAT,
                   load_gt=cfg.MODEL.RANKSEG.USE_GT, ignore_label=ignore_label)

    def __call__(self, dataset_dict: Dict[str, Any]) -> Dict[str, Any]:
        """Returns a copy of ``dataset_dict`` plus ``image`` (uint8 [C, H', W'], resized).

        ``height`` and ``width`` keep (or are filled with) the original image size, to which the
        model resizes its predictions.
        """
        dataset_dict = copy.deepcopy(dataset_dict)
        image = read_image(dataset_dict["file_name"], format=self.image_format)
        sem_seg, panoptic_classes = None, None
        if self.load_gt and "segments_info" in dataset_dict:
            # panoptic data: the categories of the non-crowd segments, as upstream's test mapper takes them (the
            # oracle needs only the categories)
            panoptic_classes = sorted({int(s["category_id"]) for s in dataset_dict["segments_info"]
                                       if not s.get("iscrowd", 0)})
        elif self.load_gt:
            if "sem_seg_file_name" not in dataset_dict:
                raise ValueError(
                    f"{dataset_dict['file_name']}: MODEL.RANKSEG.USE_GT needs a label map ('sem_seg_file_name') or "
                    "panoptic 'segments_info'."
                )
            sem_seg = read_image(dataset_dict["sem_seg_file_name"])
        check_image_size(dataset_dict, image, sem_seg)
        image, sem_seg = apply_augmentations([self.resize], image, sem_seg)
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if sem_seg is not None:
            dataset_dict["instances"] = semantic_to_instances(torch.as_tensor(sem_seg.astype(np.int64)),
                                                              self.ignore_label)
        elif panoptic_classes is not None:
            dataset_dict["instances"] = Instances(tuple(image.shape[:2]),
                                                  gt_classes=torch.tensor(panoptic_classes, dtype=torch.int64))
        return dataset_dict

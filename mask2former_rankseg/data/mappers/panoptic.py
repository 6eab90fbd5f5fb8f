"""Training mapper for panoptic segmentation in Mask2Former's format (one mask per non-crowd segment)."""

from __future__ import annotations

import copy
from typing import Any, Dict

import numpy as np
import torch
from torch.nn import functional as F

from ...structures import Instances
from ...utils.panoptic import VOID_SEGMENT, rgb2id
from ..detection_utils import check_image_size, read_image
from ..transforms import apply_augmentations_with_maps
from .semantic import IMAGE_PAD_VALUE, MaskFormerSemanticDatasetMapper

__all__ = ["MaskFormerPanopticDatasetMapper", "check_segment_ids", "panoptic_to_instances"]

def check_segment_ids(pan_seg: np.ndarray, segments_info, source: str) -> None:
    """Raise ValueError, naming ``source``, when ``pan_seg`` has a segment id (other than 0, void) that
    ``segments_info`` does not list."""
    listed = {int(s["id"]) for s in segments_info}
    unlisted = sorted(set(np.unique(pan_seg).tolist()) - listed - {VOID_SEGMENT})
    if unlisted:
        raise ValueError(f"{source} holds segment ids {unlisted[:10]} that its segments_info does not list "
                         f"(listed: {sorted(listed)[:10]}); the PNG and the JSON do not belong together.")


def panoptic_to_instances(pan_seg: torch.Tensor, segments_info) -> Instances:
    """One mask per non-crowd segment of ``pan_seg`` [H, W] (segment ids), classes from ``segments_info``."""
    kept = [s for s in segments_info if not s.get("iscrowd", 0)]
    classes = torch.tensor([int(s["category_id"]) for s in kept], dtype=torch.int64)
    if kept:
        ids = torch.tensor([int(s["id"]) for s in kept], dtype=pan_seg.dtype)
        masks = pan_seg[None] == ids[:, None, None]
    else:
        masks = torch.zeros((0, *pan_seg.shape), dtype=torch.bool)
    return Instances(tuple(pan_seg.shape), gt_classes=classes, gt_masks=masks)


class MaskFormerPanopticDatasetMapper(MaskFormerSemanticDatasetMapper):
    """Reads, augments and pads one training image with its panoptic PNG (and semantic map when the dataset
    has one); ``instances`` hold one mask per non-crowd segment, crowd regions are left out (as upstream).

    Same arguments and augmentations as :class:`MaskFormerSemanticDatasetMapper`
    (``INPUT.DATASET_MAPPER_NAME: mask_former_panoptic``).
    """

    def __call__(self, dataset_dict: Dict[str, Any]) -> Dict[str, Any]:
        """Returns a copy of ``dataset_dict`` plus ``image`` (uint8 [C, H, W]), ``instances`` (``gt_classes``
        int64 [N], ``gt_masks`` bool [N, H, W]) and ``sem_seg`` (int64 [H, W]) when the dataset has one."""
        dataset_dict = copy.deepcopy(dataset_dict)
        if "pan_seg_file_name" not in dataset_dict or "segments_info" not in dataset_dict:
            raise ValueError(f"Dataset dict of {dataset_dict.get('file_name')!r} has no 'pan_seg_file_name' / "
                             "'segments_info'; panoptic training needs a COCO-panoptic-format dataset.")
        image = read_image(dataset_dict["file_name"], format=self.image_format)
        pan_file = dataset_dict.pop("pan_seg_file_name")
        pan_seg = rgb2id(read_image(pan_file, format="RGB"))
        sem_seg = None
        if "sem_seg_file_name" in dataset_dict:
            sem_seg = read_image(dataset_dict.pop("sem_seg_file_name")).astype(np.int64)
        check_image_size(dataset_dict, image, pan_seg)
        check_segment_ids(pan_seg, dataset_dict["segments_info"], f"{pan_file} (image {dataset_dict['file_name']})")

        image, sem_seg, (pan_seg,) = apply_augmentations_with_maps(self.augmentations, image, sem_seg, [pan_seg])
        image_t = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        pan_t = torch.as_tensor(np.ascontiguousarray(pan_seg))
        sem_t = None if sem_seg is None else torch.as_tensor(np.ascontiguousarray(sem_seg))
        if self.size_divisibility > 0:
            h, w = image_t.shape[-2:]
            d = self.size_divisibility
            pad = [0, -w % d, 0, -h % d]
            image_t = F.pad(image_t, pad, value=IMAGE_PAD_VALUE).contiguous()
            pan_t = F.pad(pan_t, pad, value=VOID_SEGMENT).contiguous()
            if sem_t is not None:
                sem_t = F.pad(sem_t, pad, value=self.ignore_label).contiguous()

        dataset_dict["image"] = image_t
        if sem_t is not None:
            dataset_dict["sem_seg"] = sem_t
        dataset_dict["instances"] = panoptic_to_instances(pan_t, dataset_dict["segments_info"])
        return dataset_dict

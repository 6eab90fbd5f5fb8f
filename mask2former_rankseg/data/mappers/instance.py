"""Training mapper for instance segmentation in Mask2Former's format (one mask per non-crowd object)."""

from __future__ import annotations

import copy
from typing import Any, Dict, List, Union

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch.nn import functional as F

from ...structures import Instances
from ..detection_utils import check_image_size, read_image
from ..transforms import RandomCrop_CategoryAreaConstraint, apply_augmentations_with_maps
from .semantic import IMAGE_PAD_VALUE, MaskFormerSemanticDatasetMapper

__all__ = ["MaskFormerInstanceDatasetMapper", "segmentation_to_mask"]


def segmentation_to_mask(segmentation: Union[List, Dict, np.ndarray], height: int, width: int,
                         source: str = "annotation") -> np.ndarray:
    """COCO ``segmentation`` (polygons, compressed or uncompressed RLE, or a mask) -> [H, W] uint8 {0, 1}."""
    if isinstance(segmentation, np.ndarray):
        if segmentation.shape != (height, width):
            raise ValueError(f"{source}: mask of shape {segmentation.shape}, image {height}x{width}.")
        return segmentation.astype(np.uint8)
    if isinstance(segmentation, list):  # polygons [[x0, y0, x1, y1, ...], ...]
        polygons = [p for p in segmentation if len(p) >= 6]
        if not polygons:
            return np.zeros((height, width), dtype=np.uint8)
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    elif isinstance(segmentation, dict) and "counts" in segmentation:
        rle = segmentation
        if isinstance(rle["counts"], list):  # uncompressed RLE
            rle = mask_utils.frPyObjects(rle, *rle["size"])
        if tuple(rle["size"]) != (height, width):
            raise ValueError(f"{source}: RLE of size {rle['size']}, image {height}x{width}.")
    else:
        raise ValueError(f"{source}: segmentation of type {type(segmentation).__name__} is neither polygons, RLE "
                         "nor a mask.")
    return mask_utils.decode(rle).astype(np.uint8)


class MaskFormerInstanceDatasetMapper(MaskFormerSemanticDatasetMapper):
    """Reads, augments and pads one training image with its COCO instance annotations; ``instances`` hold one
    mask per non-crowd object (crowd regions are left out, as upstream).

    Same arguments as :class:`MaskFormerSemanticDatasetMapper` (``INPUT.DATASET_MAPPER_NAME:
    mask_former_instance``); masks are rasterised at the original size and transformed like label maps.
    """

    drop_empty = False
    """Drop objects left with no pixel after augmentation (the LSJ mapper does, as upstream)."""

    @classmethod
    def from_config(cls, cfg, is_train: bool = True) -> MaskFormerInstanceDatasetMapper:
        """The semantic mapper's augmentations with a plain random crop (no category-area constraint), as
        upstream's instance mapper."""
        mapper = super().from_config(cfg, is_train)
        mapper.augmentations = [a.crop_aug if isinstance(a, RandomCrop_CategoryAreaConstraint) else a
                                for a in mapper.augmentations]
        return mapper

    def __call__(self, dataset_dict: Dict[str, Any]) -> Dict[str, Any]:
        """Returns a copy of ``dataset_dict`` without ``annotations``, plus ``image`` (uint8 [C, H, W]) and
        ``instances`` (``gt_classes`` int64 [N], ``gt_masks`` bool [N, H, W])."""
        dataset_dict = copy.deepcopy(dataset_dict)
        if "annotations" not in dataset_dict:
            raise ValueError(f"Dataset dict of {dataset_dict.get('file_name')!r} has no 'annotations'; instance "
                             "training needs a COCO-instance-format dataset.")
        image = read_image(dataset_dict["file_name"], format=self.image_format)
        check_image_size(dataset_dict, image)
        h, w = image.shape[:2]
        objects = [a for a in dataset_dict.pop("annotations") if not a.get("iscrowd", 0)]
        masks = [segmentation_to_mask(a["segmentation"], h, w, dataset_dict["file_name"]) for a in objects]
        image, _, masks = apply_augmentations_with_maps(self.augmentations, image, None, masks)
        image_t = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        shape = image_t.shape[-2:]
        masks_t = (torch.as_tensor(np.stack(masks)).bool() if masks
                   else torch.zeros((0, *shape), dtype=torch.bool))
        if self.size_divisibility > 0:
            d = self.size_divisibility
            pad = [0, -shape[1] % d, 0, -shape[0] % d]
            image_t = F.pad(image_t, pad, value=IMAGE_PAD_VALUE).contiguous()
            masks_t = F.pad(masks_t, pad, value=False).contiguous()
        classes = torch.tensor([int(a["category_id"]) for a in objects], dtype=torch.int64)
        if self.drop_empty and len(classes):
            keep = masks_t.flatten(1).any(1)
            masks_t, classes = masks_t[keep], classes[keep]
        dataset_dict["image"] = image_t
        dataset_dict["instances"] = Instances(tuple(image_t.shape[-2:]), gt_masks=masks_t, gt_classes=classes)
        return dataset_dict

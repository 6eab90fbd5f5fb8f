"""Test-time mapper: read the image and resize its shorter side; labels stay on disk for evaluators."""

from __future__ import annotations

import copy
import logging
import sys
from typing import Any, Dict, Sequence, Union

import numpy as np
import torch

from ..detection_utils import check_image_size, read_image
from ..transforms import ResizeShortestEdge, apply_augmentations

__all__ = ["InferenceDatasetMapper"]

logger = logging.getLogger(__name__)


class InferenceDatasetMapper:
    """Reads one image and resizes it (shorter side ``min_size``, longer side <= ``max_size``).

    Args:
        min_size: shorter-side length (an int; a sequence is treated as choices, like detectron2).
        max_size: cap on the longer side.
        image_format: "RGB", "BGR" or "L", channel order of the output image.
    """

    def __init__(self, *, min_size: Union[int, Sequence[int]], max_size: int = sys.maxsize, image_format: str):
        self.resize = ResizeShortestEdge(min_size, max_size, "choice")
        self.image_format = image_format
        logger.info("[%s] Resize used in inference: %s", type(self).__name__, self.resize)

    @classmethod
    def from_config(cls, cfg) -> InferenceDatasetMapper:
        return cls(min_size=cfg.INPUT.MIN_SIZE_TEST, max_size=cfg.INPUT.MAX_SIZE_TEST, image_format=cfg.INPUT.FORMAT)

    def __call__(self, dataset_dict: Dict[str, Any]) -> Dict[str, Any]:
        """Returns a copy of ``dataset_dict`` plus ``image`` (uint8 [C, H', W'], resized).

        ``height`` and ``width`` keep (or are filled with) the original image size, to which the
        model resizes its predictions.
        """
        dataset_dict = copy.deepcopy(dataset_dict)
        image = read_image(dataset_dict["file_name"], format=self.image_format)
        check_image_size(dataset_dict, image)
        image, _ = apply_augmentations([self.resize], image)
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        return dataset_dict

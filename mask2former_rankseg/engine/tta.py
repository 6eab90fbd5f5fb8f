"""Test-time augmentation for semantic segmentation (``TEST.AUG``): scores averaged over scales and flips.

As Mask2Former's ``SemanticSegmentorWithTTA`` with detectron2's ``DatasetMapperTTA``: the (already mapped)
input image is resized so its shorter side is each of ``TEST.AUG.MIN_SIZES`` (longer side at most
``TEST.AUG.MAX_SIZE``), and also mirrored when ``TEST.AUG.FLIP``; the model predicts ``sem_seg`` at the
original size for each, mirrored predictions are flipped back, and the ``len(MIN_SIZES) * (1 + FLIP)``
predictions are averaged. Panoptic and instance outputs get no test-time augmentation (upstream has none
for mask classification either): the wrapper returns only semantic results.
"""

from __future__ import annotations

import logging
from typing import Dict, Iterator, List, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ..data.transforms import HFlipTransform, ResizeShortestEdge, ResizeTransform, Transform
from ..modeling.meta_arch.grouped_scores import GroupedScores

__all__ = ["SemanticSegmentorWithTTA"]

logger = logging.getLogger(__name__)


class SemanticSegmentorWithTTA(nn.Module):
    """Wraps a semantic segmentation model; same input/output format (``sem_seg`` [K, H, W] per image).

    The sum over augmentations is kept as :class:`GroupedScores` when the model can produce them
    (``semantic_output="grouped"``, as :class:`MaskFormer`): with RankSeg only the classes some augmentation
    selected get their own map, the rest share one. Set :attr:`semantic_output` to "labels" (evaluation does,
    when no evaluator needs scores) to get ``sem_seg_labels`` [H, W] instead of the [K, H, W] average.

    Args:
        model: returns a list of dicts with ``sem_seg`` [K, H, W] at the inputs' ``height`` x ``width`` (or, in
            "grouped" mode, ``sem_seg_grouped``).
        min_sizes: shorter-side lengths of the scales.
        max_size: cap on the longer side.
        flip: also predict on each scale mirrored left-right.
    """

    def __init__(self, model: nn.Module, *, min_sizes: Sequence[int], max_size: int, flip: bool):
        super().__init__()
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        if not min_sizes:
            raise ValueError("TEST.AUG.MIN_SIZES is empty; give at least one scale for test-time augmentation.")
        self.model = model
        self.min_sizes = [int(s) for s in min_sizes]
        self.max_size = int(max_size)
        self.flip = bool(flip)
        self.semantic_output = "scores"

    @classmethod
    def from_config(cls, cfg, model: nn.Module) -> SemanticSegmentorWithTTA:
        aug = cfg.TEST.AUG
        return cls(model, min_sizes=aug.MIN_SIZES, max_size=aug.MAX_SIZE, flip=aug.FLIP)

    def augmented_inputs(self, input_dict: Dict) -> Iterator[Tuple[Dict, bool]]:
        """(augmented copy of ``input_dict``, flipped?) for every scale (and its mirror)."""
        image = input_dict["image"].permute(1, 2, 0).cpu().numpy()
        h, w = image.shape[:2]
        original = (input_dict.get("height", h), input_dict.get("width", w))
        for size in self.min_sizes:
            resize: Transform = ResizeTransform(h, w, *ResizeShortestEdge.get_output_shape(h, w, size, self.max_size))
            resized = resize.apply_image(image)
            for flipped in ((False, True) if self.flip else (False,)):
                out = HFlipTransform(resized.shape[1]).apply_image(resized) if flipped else resized
                augmented = dict(input_dict)
                augmented["image"] = torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1)))
                augmented["height"], augmented["width"] = original
                yield augmented, flipped

    def forward(self, batched_inputs: List[Dict]) -> List[Dict]:
        return [self._inference_one_image(x) for x in batched_inputs]

    def _inference_one_image(self, input_dict: Dict) -> Dict:
        total, count = None, 0
        grouped = getattr(self.model, "semantic_output", None) is not None
        previous = getattr(self.model, "semantic_output", None)
        try:
            if grouped:
                self.model.semantic_output = "grouped"
            for augmented, flipped in self.augmented_inputs(input_dict):
                with torch.no_grad():
                    output = self.model([augmented])[0]
                scores = output["sem_seg_grouped"] if grouped else GroupedScores.from_dense(output["sem_seg"])
                if flipped:
                    scores = scores.flip([-1])
                total = scores if total is None else total.add_(scores)
                count += 1
        finally:
            if grouped:
                self.model.semantic_output = previous
        average = total.scale_(1.0 / count)
        if self.semantic_output == "labels":
            return {"sem_seg_labels": average.labels()}
        return {"sem_seg": average.dense()}

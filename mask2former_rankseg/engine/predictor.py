"""``Predictor``: one image in, the model's output dict out (for demos and notebooks)."""

from __future__ import annotations

from typing import Dict

import numpy as np
import torch

from .checkpoint import Checkpointer


class Predictor:
    """Builds the model of ``cfg``, loads ``MODEL.WEIGHTS`` and runs single images.

    ``__call__(image)`` takes an HxWx3 uint8 numpy image in ``INPUT.FORMAT`` and returns the output dict of
    the model for it (``sem_seg`` [K, H, W], ``multilabel`` with RankSeg).
    """

    def __init__(self, cfg):
        from ..data.transforms import ResizeShortestEdge
        from ..modeling import build_model

        self.cfg = cfg.clone()
        self.model = build_model(self.cfg).eval()
        device = cfg.MODEL.DEVICE if torch.cuda.is_available() or not cfg.MODEL.DEVICE.startswith("cuda") else "cpu"
        self.model.to(device)
        Checkpointer(self.model).load(cfg.MODEL.WEIGHTS, checkpointables=[])
        self.resize = ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST], cfg.INPUT.MAX_SIZE_TEST, "choice")

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> Dict:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"Predictor takes an HxWx3 uint8 image, got {image.shape} {image.dtype}.")
        height, width = image.shape[:2]
        resized = self.resize.get_transform(image).apply_image(image)
        tensor = torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1)))
        return self.model([{"image": tensor, "height": height, "width": width}])[0]

"""Predictors: an image (or a clip of video frames) in, the model's output dict out — for demos and notebooks.

    predictor = Predictor(cfg)                  # builds the model, loads MODEL.WEIGHTS
    outputs = predictor(image)                  # HxWx3 uint8 numpy image in cfg.INPUT.FORMAT
    outputs["sem_seg"], outputs["multilabel"]   # ARCHITECTURE.md, "Model input and output"

:class:`VideoPredictor` is the same for clip-level video models (``MODEL.META_ARCHITECTURE`` in
:data:`VIDEO_META_ARCHITECTURES`): a list of frames in, one dict for the whole clip out.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch
from torch import nn

from ..config import ConfigError
from ..data.transforms import ResizeShortestEdge
from ..modeling import META_ARCH_REGISTRY, build_model
from ..utils.precision import compile_model, precision_context, prepare_model_for_precision
from .checkpoint import Checkpointer
from .defaults import resolve_device, warn_if_random_weights

__all__ = ["ModelUnavailableError", "Predictor", "VIDEO_META_ARCHITECTURES", "VideoPredictor",
           "check_model_available", "is_video_config"]

logger = logging.getLogger(__name__)

VIDEO_META_ARCHITECTURES = frozenset({"VideoMaskFormer"})
"""Meta-architectures that segment a whole clip at once (upstream's names)."""

COLOR_FORMATS = ("RGB", "BGR")


class ModelUnavailableError(RuntimeError):
    """The config names a meta-architecture that this version of the package does not provide."""


def is_video_config(cfg) -> bool:
    """Whether ``cfg`` describes a clip-level video model."""
    return cfg.MODEL.META_ARCHITECTURE in VIDEO_META_ARCHITECTURES


def check_model_available(cfg) -> None:
    """Raise :class:`ModelUnavailableError` (saying what to do) if ``MODEL.META_ARCHITECTURE`` is not
    registered."""
    name = cfg.MODEL.META_ARCHITECTURE
    if name in META_ARCH_REGISTRY:
        return
    registered = sorted(n for n, _ in META_ARCH_REGISTRY)
    raise ModelUnavailableError(f"MODEL.META_ARCHITECTURE={name!r} is not a registered model; registered: "
                                f"{', '.join(registered)}.")


class _ModelRunner:
    """Shared set-up: the model in eval mode on ``MODEL.DEVICE`` (the CPU when CUDA is missing) with
    ``MODEL.WEIGHTS`` loaded, and the test-time resize (``INPUT.MIN_SIZE_TEST``, ``INPUT.MAX_SIZE_TEST``).

    Args:
        cfg: the config.
        model: an already built (and loaded) model to use instead of building one from ``cfg``; its weights
            are left as they are.
        allow_random_weights: build from ``cfg`` with an empty ``MODEL.WEIGHTS`` without the loud warning that
            the randomly initialised model's predictions are meaningless.
    """

    def __init__(self, cfg, model: Optional[nn.Module] = None, allow_random_weights: bool = False):
        if cfg.MODEL.RANKSEG.USE_GT:
            raise ConfigError("MODEL.RANKSEG.USE_GT=True is the ground-truth oracle, which needs annotations; a "
                             "predictor runs on plain images. Set MODEL.RANKSEG.USE_GT False (or use a config "
                             "without the -gt suffix).")
        if cfg.INPUT.FORMAT not in COLOR_FORMATS:
            raise ConfigError(f"INPUT.FORMAT={cfg.INPUT.FORMAT!r}: the predictor takes colour images; use one of "
                             f"{COLOR_FORMATS}.")
        self.cfg = cfg.clone()
        self.input_format = cfg.INPUT.FORMAT
        if model is None:
            check_model_available(cfg)
            warn_if_random_weights(cfg, allow_random_weights, "allow_random_weights=True")
            model = build_model(self.cfg)
            Checkpointer(model).load(cfg.MODEL.WEIGHTS, checkpointables=[])
            compile_model(model, cfg.MODEL.COMPILE)
        self.device = resolve_device(cfg.MODEL.DEVICE)
        self.model = prepare_model_for_precision(model.eval().to(self.device), cfg.MODEL.PRECISION, self.device)
        self.precision = cfg.MODEL.PRECISION
        self.resize = ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, "choice")

    def _to_input_format(self, image: np.ndarray, format: Optional[str]) -> np.ndarray:
        """Check an HxWx3 uint8 image and flip its channels if it is in the other colour order."""
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            shape = getattr(image, "shape", None)
            raise ValueError(f"The predictor takes an HxWx3 uint8 numpy image, got {type(image).__name__} "
                             f"{shape} {getattr(image, 'dtype', '')}.")
        format = self.input_format if format is None else format
        if format not in COLOR_FORMATS:
            raise ValueError(f"format={format!r}: use one of {COLOR_FORMATS}.")
        return image[:, :, ::-1] if format != self.input_format else image

    def _resized_tensor(self, image: np.ndarray, transform: Any) -> torch.Tensor:
        """uint8 [3, H', W'] tensor of ``image`` after the test-time resize."""
        resized = transform.apply_image(image)
        return torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1)))


class Predictor(_ModelRunner):
    """Builds the image model of ``cfg``, loads ``MODEL.WEIGHTS`` and runs it on single images.

    ``predictor(image)`` takes an HxWx3 uint8 numpy image, in ``cfg.INPUT.FORMAT`` unless ``format`` ("RGB" or
    "BGR", e.g. "BGR" for ``cv2.imread``) says otherwise, resizes it as at test time and returns the model's
    output dict for it, at the image's own size (tensors on the model's device), with the keys of the
    enabled outputs:

    * ``sem_seg``: [K, H, W] class scores;
    * ``panoptic_seg``: ``(id_map [H, W] int32, segments_info [{"id", "category_id", "isthing"}])``;
    * ``instances``: :class:`~mask2former_rankseg.structures.Instances` with ``pred_masks`` [N, H, W],
      ``scores`` [N], ``pred_classes`` [N];
    * ``multilabel`` (RankSeg): ``{"scores": [K] image-level logits, "topk": [k] selected class ids, best
      first}``.
    """

    def __init__(self, cfg, model: Optional[nn.Module] = None, allow_random_weights: bool = False):
        if is_video_config(cfg):
            raise ConfigError(f"MODEL.META_ARCHITECTURE={cfg.MODEL.META_ARCHITECTURE!r} is a video model; use "
                             "VideoPredictor, which takes a clip of frames.")
        super().__init__(cfg, model, allow_random_weights)

    @torch.no_grad()
    def __call__(self, image: np.ndarray, format: Optional[str] = None) -> Dict[str, Any]:
        image = self._to_input_format(image, format)
        height, width = image.shape[:2]
        tensor = self._resized_tensor(image, self.resize.get_transform(image))
        with precision_context(self.precision, self.device):
            return self.model([{"image": tensor, "height": height, "width": width}])[0]


class VideoPredictor(_ModelRunner):
    """Runs a clip-level video model (``VideoMaskFormer``) on a list of frames.

    ``predictor(frames)`` takes T HxWx3 uint8 frames of one size (in ``cfg.INPUT.FORMAT`` unless ``format``
    says otherwise), resizes them all alike, calls the model with one input dict ``{"image": [T uint8
    [3, H', W'] tensors], "height": H, "width": W}`` and returns its dict for the clip:

    * ``image_size``: (H, W);
    * ``pred_scores``: N floats, ``pred_labels``: N class ids, ``pred_masks``: N bool [T, H, W] masks (one
      per track, the track id being its position);
    * ``sem_seg_labels``: int64 [T, H, W] label maps (video semantic segmentation configs);
    * ``multilabel`` (RankSeg): as for images, for the whole clip.
    """

    def __init__(self, cfg, model: Optional[nn.Module] = None, allow_random_weights: bool = False):
        if not is_video_config(cfg):
            raise ConfigError(f"MODEL.META_ARCHITECTURE={cfg.MODEL.META_ARCHITECTURE!r} is an image model; use "
                             "Predictor.")
        super().__init__(cfg, model, allow_random_weights)

    @torch.no_grad()
    def __call__(self, frames: Sequence[np.ndarray], format: Optional[str] = None) -> Dict[str, Any]:
        if len(frames) == 0:
            raise ValueError("VideoPredictor needs at least one frame.")
        frames = [self._to_input_format(f, format) for f in frames]
        height, width = frames[0].shape[:2]
        for t, frame in enumerate(frames):
            if frame.shape[:2] != (height, width):
                raise ValueError(f"Frame {t} is {frame.shape[:2]} but frame 0 is {(height, width)}; the frames "
                                 "of a clip must have one size.")
        transform = self.resize.get_transform(frames[0])
        tensors = [self._resized_tensor(f, transform) for f in frames]
        with precision_context(self.precision, self.device):
            output = self.model([{"image": tensors, "height": height, "width": width}])
        return output[0] if isinstance(output, (list, tuple)) else output

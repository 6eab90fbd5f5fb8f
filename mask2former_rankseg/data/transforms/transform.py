"""Deterministic transforms on numpy images ([H, W, C] uint8) and segmentation maps ([H, W] int).

A :class:`Transform` holds all its parameters (already sampled); an ``Augmentation``
(see ``augmentation.py``) samples them. Images are resized bilinearly, label maps with nearest
neighbour, both with the pixel-centre convention so they stay aligned.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

__all__ = [
    "Transform",
    "NoOpTransform",
    "ResizeTransform",
    "CropTransform",
    "HFlipTransform",
    "VFlipTransform",
    "BlendTransform",
    "ColorAugSSDTransform",
]


class Transform:
    """Base class: ``apply_image`` and ``apply_segmentation`` (identity unless overridden)."""

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        return image

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return segmentation

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class NoOpTransform(Transform):
    """Leaves image and segmentation unchanged."""


class ResizeTransform(Transform):
    """Resize from (h, w) to (new_h, new_w): image bilinear, segmentation nearest."""

    def __init__(self, h: int, w: int, new_h: int, new_w: int):
        self.h, self.w, self.new_h, self.new_w = int(h), int(w), int(new_h), int(new_w)

    def _check(self, array: np.ndarray, what: str) -> None:
        if array.shape[:2] != (self.h, self.w):
            raise ValueError(f"{self} got a {what} of shape {array.shape}; expected (h, w)=({self.h}, {self.w}).")

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        """[h, w, C] or [h, w] uint8 -> [new_h, new_w, C] or [new_h, new_w]."""
        self._check(image, "image")
        if image.dtype != np.uint8:
            raise TypeError(f"ResizeTransform expects a uint8 image, got {image.dtype}.")
        if (self.new_h, self.new_w) == (self.h, self.w):
            return image
        squeeze = image.ndim == 3 and image.shape[2] == 1
        pil = Image.fromarray(image[:, :, 0] if squeeze else image)
        out = np.asarray(pil.resize((self.new_w, self.new_h), Image.BILINEAR))
        return out[:, :, None] if squeeze else out

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        """[h, w] labels of any integer dtype -> [new_h, new_w] (nearest neighbour)."""
        self._check(segmentation, "segmentation")
        rows = _nearest_indices(self.h, self.new_h)
        cols = _nearest_indices(self.w, self.new_w)
        return segmentation[rows[:, None], cols[None, :]]


class CropTransform(Transform):
    """Crop the window starting at (x0, y0) of size (w, h)."""

    def __init__(self, x0: int, y0: int, w: int, h: int):
        self.x0, self.y0, self.w, self.h = int(x0), int(y0), int(w), int(h)

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        return image[self.y0 : self.y0 + self.h, self.x0 : self.x0 + self.w]

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return self.apply_image(segmentation)


class HFlipTransform(Transform):
    """Mirror left-right an image of the given width."""

    def __init__(self, width: int):
        self.width = int(width)

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(image[:, ::-1])

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return self.apply_image(segmentation)


class VFlipTransform(Transform):
    """Mirror top-bottom an image of the given height."""

    def __init__(self, height: int):
        self.height = int(height)

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(image[::-1])

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return self.apply_image(segmentation)


class BlendTransform(Transform):
    """``src_weight * src_image + dst_weight * image`` (detectron2's photometric blend); segmentations unchanged.

    Args:
        src_image: a scalar or an array broadcastable to the image (e.g. its grey version).
        src_weight, dst_weight: blend weights.
    """

    def __init__(self, src_image, src_weight: float, dst_weight: float):
        self.src_image, self.src_weight, self.dst_weight = src_image, float(src_weight), float(dst_weight)

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        """uint8 [H, W, C] -> uint8 (clipped to 0..255)."""
        src = np.asarray(self.src_image, dtype=np.float32)
        out = self.src_weight * src + self.dst_weight * image.astype(np.float32)
        return np.clip(out, 0, 255).astype(np.uint8) if image.dtype == np.uint8 else out.astype(image.dtype)

    def __repr__(self) -> str:
        return f"BlendTransform(src_weight={self.src_weight:.3f}, dst_weight={self.dst_weight:.3f})"


class ColorAugSSDTransform(Transform):
    """SSD's photometric distortion (as PointRend's / Mask2Former's ``ColorAugSSDTransform``).

    Random brightness shift, then either (contrast, saturation, hue) or (saturation, hue, contrast),
    each applied with probability 1/2. The segmentation is unchanged. Unlike the other transforms
    its randomness is drawn in ``apply_image`` (from ``np.random``), as upstream's.

    Args:
        img_format: "RGB" or "BGR", the channel order of the images it receives.
        brightness_delta: additive shift drawn from U(-delta, delta).
        contrast_low, contrast_high: multiplicative contrast factor range.
        saturation_low, saturation_high: multiplicative saturation factor range (HSV S channel).
        hue_delta: integer shift of OpenCV's hue (0..179) drawn from [-delta, delta].
    """

    def __init__(self, img_format: str, brightness_delta: float = 32, contrast_low: float = 0.5,
                 contrast_high: float = 1.5, saturation_low: float = 0.5, saturation_high: float = 1.5,
                 hue_delta: int = 18):
        if img_format not in ("RGB", "BGR"):
            raise ValueError(f"ColorAugSSDTransform needs img_format 'RGB' or 'BGR', got {img_format!r}.")
        self.img_format = img_format
        self.brightness_delta = brightness_delta
        self.contrast_low, self.contrast_high = contrast_low, contrast_high
        self.saturation_low, self.saturation_high = saturation_low, saturation_high
        self.hue_delta = int(hue_delta)

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        """[H, W, 3] uint8 in ``img_format`` -> same shape and dtype."""
        bgr = image[:, :, ::-1] if self.img_format == "RGB" else image
        bgr = np.ascontiguousarray(bgr)
        if np.random.randint(2):
            bgr = _affine(bgr, 1.0, np.random.uniform(-self.brightness_delta, self.brightness_delta))
        contrast_first = bool(np.random.randint(2))
        if contrast_first:
            bgr = self._contrast(bgr)
        bgr = self._saturation(bgr, cv2)
        bgr = self._hue(bgr, cv2)
        if not contrast_first:
            bgr = self._contrast(bgr)
        out = bgr[:, :, ::-1] if self.img_format == "RGB" else bgr
        return np.ascontiguousarray(out)

    def _contrast(self, bgr: np.ndarray) -> np.ndarray:
        if np.random.randint(2):
            return _affine(bgr, np.random.uniform(self.contrast_low, self.contrast_high), 0.0)
        return bgr

    def _saturation(self, bgr: np.ndarray, cv2) -> np.ndarray:
        if np.random.randint(2):
            hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
            hsv[:, :, 1] = _affine(hsv[:, :, 1], np.random.uniform(self.saturation_low, self.saturation_high), 0.0)
            return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
        return bgr

    def _hue(self, bgr: np.ndarray, cv2) -> np.ndarray:
        if np.random.randint(2):
            hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
            shift = np.random.randint(-self.hue_delta, self.hue_delta + 1)
            hsv[:, :, 0] = ((hsv[:, :, 0].astype(np.int32) + shift) % 180).astype(np.uint8)
            return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
        return bgr


def _affine(array: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """``clip(array * alpha + beta, 0, 255)`` as uint8."""
    return np.clip(array.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


def _nearest_indices(size: int, new_size: int) -> np.ndarray:
    """Source index of each of ``new_size`` output pixels (pixel-centre nearest neighbour)."""
    centres = (np.arange(new_size, dtype=np.float64) + 0.5) * (size / new_size)
    return np.minimum(np.floor(centres).astype(np.int64), size - 1)

"""mmsegmentation's training augmentations (the pipeline of RankSeg's mmseg configs, e.g. ADE20K and
COCO-Stuff-10k): ``Resize`` with ``ratio_range``, ``RandomCrop`` with ``cat_max_ratio`` and
``PhotoMetricDistortion``, reproduced from mmseg 0.x / mmcv 1.3 (``mmseg/datasets/pipelines/transforms.py``,
``mmcv/image/geometric.py``). mmseg's ``RandomFlip`` is :class:`~.augmentation.RandomFlip`.

Like mmseg they draw from ``np.random`` (the global RNG), the same numbers in the same order, so under one seed
the pipeline [:class:`RatioRangeResize`, :class:`RandomCropCatMaxRatio`, ``RandomFlip``,
:class:`PhotoMetricDistortion`] samples what mmseg's pipeline samples.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

from .augmentation import Augmentation
from .transform import CropTransform, ResizeTransform, Transform, _affine

__all__ = [
    "CV2ResizeTransform",
    "PhotoMetricDistortion",
    "PhotoMetricDistortionTransform",
    "RandomCropCatMaxRatio",
    "RatioRangeResize",
    "rescale_size",
]

_CV2_LABEL_DTYPES = (np.uint8, np.int8, np.uint16, np.int16, np.int32)


def rescale_size(h: int, w: int, scale: Sequence[int]) -> Tuple[int, int]:
    """mmcv's ``rescale_size``: (new_h, new_w) of the largest rescaling of an (h, w) image that keeps its aspect
    ratio with the long side <= max(scale) and the short side <= min(scale) (``int(x * factor + 0.5)``)."""
    factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
    return max(1, int(h * factor + 0.5)), max(1, int(w * factor + 0.5))


class CV2ResizeTransform(ResizeTransform):
    """Resize as mmcv's ``imresize`` (cv2 backend): image ``cv2.INTER_LINEAR``, segmentation ``cv2.INTER_NEAREST``.

    :class:`ResizeTransform` (detectron2's) resizes images with PIL, which smooths when it shrinks, and labels
    by pixel centres; cv2 does neither, so outputs differ slightly.
    """

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        """[h, w, C] or [h, w] uint8 -> [new_h, new_w, C] or [new_h, new_w]."""
        self._check(image, "image")
        out = cv2.resize(image, (self.new_w, self.new_h), interpolation=cv2.INTER_LINEAR)
        return out[:, :, None] if image.ndim == 3 and out.ndim == 2 else out

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        """[h, w] integer labels -> [new_h, new_w] of the same dtype."""
        self._check(segmentation, "segmentation")
        if segmentation.dtype in _CV2_LABEL_DTYPES:
            return cv2.resize(segmentation, (self.new_w, self.new_h), interpolation=cv2.INTER_NEAREST)
        info = np.iinfo(np.int32)
        if segmentation.size and (segmentation.min() < info.min or segmentation.max() > info.max):
            raise ValueError(f"{self}: labels outside the int32 range cannot be resized with cv2.")
        resized = cv2.resize(segmentation.astype(np.int32), (self.new_w, self.new_h),
                             interpolation=cv2.INTER_NEAREST)
        return resized.astype(segmentation.dtype)


class RatioRangeResize(Augmentation):
    """mmseg's ``Resize(img_scale=scale, ratio_range=ratio_range, keep_ratio=True)``.

    Draws r ~ U(ratio_range), scales the target to ``(int(scale[0] * r), int(scale[1] * r))`` and rescales the
    image, keeping its aspect ratio, to the largest size with long side <= the larger and short side <= the
    smaller of the two (:func:`rescale_size`); resized with cv2 as mmcv (:class:`CV2ResizeTransform`).

    Args:
        scale: the target (long, short) edge lengths, in either order (mmseg's ``img_scale``, e.g. (2048, 512)).
        ratio_range: (min, max) ratio, e.g. (0.5, 2.0).
    """

    def __init__(self, scale: Sequence[int], ratio_range: Sequence[float]):
        if len(scale) != 2 or min(scale) <= 0:
            raise ValueError(f"RatioRangeResize scale must be two positive edge lengths, got {scale!r}.")
        if len(ratio_range) != 2 or not 0 < ratio_range[0] <= ratio_range[1]:
            raise ValueError(f"RatioRangeResize ratio_range must be (min, max) with 0 < min <= max, got "
                             f"{ratio_range!r}.")
        self.scale = (int(scale[0]), int(scale[1]))
        self.ratio_range = (float(ratio_range[0]), float(ratio_range[1]))

    def output_size(self, h: int, w: int, ratio: float) -> Tuple[int, int]:
        """(new_h, new_w) of an (h, w) image for the drawn ``ratio``."""
        target = (int(self.scale[0] * ratio), int(self.scale[1] * ratio))
        return rescale_size(h, w, (max(1, target[0]), max(1, target[1])))

    def get_transform(self, image: np.ndarray, sem_seg: Optional[np.ndarray] = None) -> Transform:
        h, w = image.shape[:2]
        low, high = self.ratio_range
        ratio = np.random.random_sample() * (high - low) + low
        return CV2ResizeTransform(h, w, *self.output_size(h, w, ratio))


class RandomCropCatMaxRatio(Augmentation):
    """mmseg's ``RandomCrop(crop_size, cat_max_ratio, ignore_index)``.

    A window of ``crop_size`` (clipped to the image) is drawn; with ``cat_max_ratio < 1`` it is kept when it holds
    more than one non-ignored label and none covers ``cat_max_ratio`` or more of the non-ignored pixels, else a
    new window is drawn, up to 10 times; the 11th window is kept unchecked. (detectron2's
    ``RandomCrop_CategoryAreaConstraint`` keeps the 10th rejected window instead; otherwise they agree.)

    Args:
        crop_size: (h, w) in pixels.
        cat_max_ratio: largest allowed fraction of one label among the non-ignored pixels.
        ignore_index: label not counted.
    """

    NUM_RETRIES = 10

    def __init__(self, crop_size: Sequence[int], cat_max_ratio: float = 1.0, ignore_index: int = 255):
        if len(crop_size) != 2 or min(crop_size) <= 0:
            raise ValueError(f"RandomCropCatMaxRatio crop_size must be two positive sizes (h, w), got {crop_size!r}.")
        self.crop_size = (int(crop_size[0]), int(crop_size[1]))
        self.cat_max_ratio = float(cat_max_ratio)
        self.ignore_index = int(ignore_index)

    def _window(self, h: int, w: int) -> Tuple[int, int]:
        """(y0, x0) of a random window, as mmseg's ``get_crop_bbox``."""
        y0 = int(np.random.randint(0, max(h - self.crop_size[0], 0) + 1))
        x0 = int(np.random.randint(0, max(w - self.crop_size[1], 0) + 1))
        return y0, x0

    def _accepts(self, window: np.ndarray) -> bool:
        labels, counts = np.unique(window, return_counts=True)
        counts = counts[labels != self.ignore_index]
        return len(counts) > 1 and np.max(counts) / np.sum(counts) < self.cat_max_ratio

    def get_transform(self, image: np.ndarray, sem_seg: Optional[np.ndarray] = None) -> Transform:
        h, w = image.shape[:2]
        ch, cw = min(self.crop_size[0], h), min(self.crop_size[1], w)
        y0, x0 = self._window(h, w)
        if self.cat_max_ratio < 1.0:
            if sem_seg is None:
                raise ValueError("RandomCropCatMaxRatio with cat_max_ratio < 1 needs sem_seg.")
            for _ in range(self.NUM_RETRIES):
                if self._accepts(sem_seg[y0 : y0 + ch, x0 : x0 + cw]):
                    break
                y0, x0 = self._window(h, w)
        return CropTransform(x0, y0, cw, ch)


class PhotoMetricDistortionTransform(Transform):
    """mmseg's photometric distortion with its random choices made: on the BGR image, brightness, then contrast
    (if ``contrast_first``), saturation and hue in OpenCV's HSV (H in 0..179), then contrast (if not
    ``contrast_first``); a None step is skipped. Each step is ``clip(x * alpha + beta, 0, 255)`` truncated to
    uint8. The segmentation is unchanged.

    Args:
        img_format: "RGB" or "BGR", the channel order of the images it receives (converted to BGR and back).
        brightness: beta added to every channel.
        contrast: alpha multiplying every channel.
        contrast_first: contrast before (True) or after (False) saturation and hue.
        saturation: alpha multiplying HSV's S.
        hue: shift added to HSV's H, modulo 180.
    """

    def __init__(self, img_format: str, *, brightness: Optional[float], contrast: Optional[float],
                 contrast_first: bool, saturation: Optional[float], hue: Optional[int]):
        if img_format not in ("RGB", "BGR"):
            raise ValueError(f"PhotoMetricDistortion needs img_format 'RGB' or 'BGR', got {img_format!r}.")
        self.img_format = img_format
        self.brightness, self.contrast, self.contrast_first = brightness, contrast, bool(contrast_first)
        self.saturation, self.hue = saturation, hue

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        """[H, W, 3] uint8 in ``img_format`` -> same shape and dtype."""
        bgr = np.ascontiguousarray(image[:, :, ::-1] if self.img_format == "RGB" else image)
        if self.brightness is not None:
            bgr = _affine(bgr, 1.0, self.brightness)
        if self.contrast_first and self.contrast is not None:
            bgr = _affine(bgr, self.contrast, 0.0)
        if self.saturation is not None:
            hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
            hsv[:, :, 1] = _affine(hsv[:, :, 1], self.saturation, 0.0)
            bgr = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
        if self.hue is not None:
            hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
            hsv[:, :, 0] = (hsv[:, :, 0].astype(np.int64) + self.hue) % 180
            bgr = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
        if not self.contrast_first and self.contrast is not None:
            bgr = _affine(bgr, self.contrast, 0.0)
        return np.ascontiguousarray(bgr[:, :, ::-1] if self.img_format == "RGB" else bgr)


class PhotoMetricDistortion(Augmentation):
    """mmseg's ``PhotoMetricDistortion``: each of brightness (beta ~ U(-brightness_delta, brightness_delta)),
    contrast (alpha ~ U(contrast_range)), saturation (alpha ~ U(saturation_range)) and hue (integer shift in
    [-hue_delta, hue_delta - 1], numpy's ``randint``) is applied with probability 1/2; contrast comes second or
    last with probability 1/2. The numbers are drawn in mmseg's order.

    ``ColorAugSSDTransform`` (Mask2Former's) is the same distortion except for the hue shift, which it draws in
    [-hue_delta, hue_delta], and for drawing its numbers while it transforms.

    Args:
        img_format: "RGB" or "BGR", the channel order of the images (mmseg's images are BGR; the colour
            operations are done in BGR whatever the format).
    """

    def __init__(self, img_format: str, brightness_delta: float = 32, contrast_range: Sequence[float] = (0.5, 1.5),
                 saturation_range: Sequence[float] = (0.5, 1.5), hue_delta: int = 18):
        if img_format not in ("RGB", "BGR"):
            raise ValueError(f"PhotoMetricDistortion needs img_format 'RGB' or 'BGR', got {img_format!r}.")
        self.img_format = img_format
        self.brightness_delta = float(brightness_delta)
        self.contrast_range = (float(contrast_range[0]), float(contrast_range[1]))
        self.saturation_range = (float(saturation_range[0]), float(saturation_range[1]))
        self.hue_delta = int(hue_delta)

    def _contrast(self) -> Optional[float]:
        return float(np.random.uniform(*self.contrast_range)) if np.random.randint(2) else None

    def get_transform(self, image: np.ndarray, sem_seg: Optional[np.ndarray] = None) -> Transform:
        brightness = None
        if np.random.randint(2):
            brightness = float(np.random.uniform(-self.brightness_delta, self.brightness_delta))
        contrast_first = np.random.randint(2) == 1  # mmseg's mode 1
        contrast = self._contrast() if contrast_first else None
        saturation = float(np.random.uniform(*self.saturation_range)) if np.random.randint(2) else None
        hue = int(np.random.randint(-self.hue_delta, self.hue_delta)) if np.random.randint(2) else None
        if not contrast_first:
            contrast = self._contrast()
        return PhotoMetricDistortionTransform(self.img_format, brightness=brightness, contrast=contrast,
                                              contrast_first=contrast_first, saturation=saturation, hue=hue)

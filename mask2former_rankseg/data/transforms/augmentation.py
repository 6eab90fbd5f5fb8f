"""Random augmentations: each samples a :class:`Transform` from ``np.random`` (the global RNG).

Using numpy's global RNG means a data-loader worker seeded once (see ``data/build.py``) produces
a reproducible stream of augmentations, as in detectron2.
"""

from __future__ import annotations

import sys
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from .transform import (
    BlendTransform,
    CropTransform,
    HFlipTransform,
    NoOpTransform,
    ResizeTransform,
    Transform,
    VFlipTransform,
)

__all__ = [
    "Augmentation",
    "ResizeShortestEdge",
    "RandomCrop",
    "RandomCrop_CategoryAreaConstraint",
    "RandomFlip",
    "RandomBrightness",
    "RandomContrast",
    "RandomSaturation",
    "apply_augmentations",
]


class Augmentation:
    """Samples a :class:`Transform` for one (image, sem_seg) pair."""

    def get_transform(self, image: np.ndarray, sem_seg: Optional[np.ndarray] = None) -> Transform:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class ResizeShortestEdge(Augmentation):
    """Scale the shorter side to a sampled length, keeping the aspect ratio, longer side <= max_size.

    Args:
        short_edge_length: "range": (min, max) sampled uniformly (inclusive);
            "choice": lengths to choose from. An int means that single length.
        max_size: upper bound on the longer side after resizing.
        sample_style: "range" or "choice".
    """

    def __init__(self, short_edge_length: Union[int, Sequence[int]], max_size: int = sys.maxsize,
                 sample_style: str = "range"):
        if sample_style not in ("range", "choice"):
            raise ValueError(f"ResizeShortestEdge sample_style must be 'range' or 'choice', got {sample_style!r}.")
        if isinstance(short_edge_length, int):
            short_edge_length = (short_edge_length, short_edge_length)
        short_edge_length = tuple(int(s) for s in short_edge_length)
        if sample_style == "range" and len(short_edge_length) != 2:
            raise ValueError(
                f"ResizeShortestEdge with sample_style='range' needs (min, max), got {short_edge_length}."
            )
        self.short_edge_length = short_edge_length
        self.max_size = int(max_size)
        self.sample_style = sample_style

    def get_transform(self, image: np.ndarray, sem_seg: Optional[np.ndarray] = None) -> Transform:
        h, w = image.shape[:2]
        if self.sample_style == "range":
            size = int(np.random.randint(self.short_edge_length[0], self.short_edge_length[1] + 1))
        else:
            size = int(np.random.choice(self.short_edge_length))
        if size == 0:
            return NoOpTransform()
        new_h, new_w = self.get_output_shape(h, w, size, self.max_size)
        return ResizeTransform(h, w, new_h, new_w)

    @staticmethod
    def get_output_shape(h: int, w: int, short_edge_length: int, max_size: int) -> Tuple[int, int]:
        """(new_h, new_w) for an (h, w) image: shorter side -> ``short_edge_length``, capped by max_size."""
        scale = short_edge_length / min(h, w)
        new_h, new_w = h * scale, w * scale
        if max(new_h, new_w) > max_size:
            cap = max_size / max(new_h, new_w)
            new_h, new_w = new_h * cap, new_w * cap
        return int(new_h + 0.5), int(new_w + 0.5)


class RandomCrop(Augmentation):
    """Crop a random window.

    Args:
        crop_type: "relative" (fraction (h, w) of the image), "relative_range" (fractions sampled in
            [crop_size, 1]), "absolute" ((h, w) pixels, clipped to the image) or "absolute_range"
            (h and w each sampled in [crop_size[0], crop_size[1]], clipped to the image).
        crop_size: two numbers, interpreted as above.
    """

    CROP_TYPES = ("relative_range", "relative", "absolute", "absolute_range")

    def __init__(self, crop_type: str, crop_size: Sequence[float]):
        if crop_type not in self.CROP_TYPES:
            raise ValueError(f"RandomCrop crop_type must be one of {self.CROP_TYPES}, got {crop_type!r}.")
        if len(crop_size) != 2:
            raise ValueError(f"RandomCrop crop_size must have two values, got {crop_size!r}.")
        if crop_type == "absolute_range" and crop_size[0] > crop_size[1]:
            raise ValueError(f"RandomCrop 'absolute_range' needs crop_size min <= max, got {crop_size!r}.")
        self.crop_type = crop_type
        self.crop_size = tuple(crop_size)

    def get_crop_size(self, image_size: Tuple[int, int]) -> Tuple[int, int]:
        """(crop_h, crop_w) in pixels for an image of size (h, w); never larger than the image."""
        h, w = image_size
        if self.crop_type == "relative":
            ch, cw = self.crop_size
            return int(h * ch + 0.5), int(w * cw + 0.5)
        if self.crop_type == "relative_range":
            low = np.asarray(self.crop_size, dtype=np.float32)
            ch, cw = low + np.random.rand(2) * (1 - low)
            return int(h * ch + 0.5), int(w * cw + 0.5)
        if self.crop_type == "absolute":
            return min(int(self.crop_size[0]), h), min(int(self.crop_size[1]), w)
        lo, hi = int(self.crop_size[0]), int(self.crop_size[1])
        ch = int(np.random.randint(min(h, lo), min(h, hi) + 1))
        cw = int(np.random.randint(min(w, lo), min(w, hi) + 1))
        return ch, cw

    def get_transform(self, image: np.ndarray, sem_seg: Optional[np.ndarray] = None) -> Transform:
        h, w = image.shape[:2]
        ch, cw = self.get_crop_size((h, w))
        y0 = int(np.random.randint(h - ch + 1))
        x0 = int(np.random.randint(w - cw + 1))
        return CropTransform(x0, y0, cw, ch)


class RandomCrop_CategoryAreaConstraint(Augmentation):  # noqa: N801 (detectron2's name)
    """:class:`RandomCrop` that avoids windows dominated by one category.

    Up to 10 windows are drawn; the first one holding more than one (non-ignored) category with
    none covering ``single_category_max_area`` or more of the non-ignored pixels is kept, else the
    10th. With ``single_category_max_area >= 1`` this is a plain :class:`RandomCrop`.

    Args:
        crop_type, crop_size: as :class:`RandomCrop`.
        single_category_max_area: largest allowed fraction of one category.
        ignored_category: label not counted (usually the ignore label).
    """

    NUM_TRIES = 10

    def __init__(self, crop_type: str, crop_size: Sequence[float], single_category_max_area: float = 1.0,
                 ignored_category: Optional[int] = None):
        self.crop_aug = RandomCrop(crop_type, crop_size)
        self.single_category_max_area = float(single_category_max_area)
        self.ignored_category = ignored_category

    def get_transform(self, image: np.ndarray, sem_seg: Optional[np.ndarray] = None) -> Transform:
        if self.single_category_max_area >= 1.0:
            return self.crop_aug.get_transform(image)
        if sem_seg is None:
            raise ValueError("RandomCrop_CategoryAreaConstraint with single_category_max_area < 1 needs sem_seg.")
        h, w = sem_seg.shape[:2]
        for _ in range(self.NUM_TRIES):
            ch, cw = self.crop_aug.get_crop_size((h, w))
            y0 = int(np.random.randint(h - ch + 1))
            x0 = int(np.random.randint(w - cw + 1))
            labels, counts = np.unique(sem_seg[y0 : y0 + ch, x0 : x0 + cw], return_counts=True)
            if self.ignored_category is not None:
                counts = counts[labels != self.ignored_category]
            if len(counts) > 1 and counts.max() < counts.sum() * self.single_category_max_area:
                break
        return CropTransform(x0, y0, cw, ch)


class ResizeScale(Augmentation):
    """Large-scale jitter's resize: draw s in [min_scale, max_scale] and resize, keeping the aspect ratio, to fit
    the box ``s * (target_height, target_width)`` (detectron2's ``ResizeScale``)."""

    def __init__(self, min_scale: float, max_scale: float, target_height: int, target_width: int):
        if not 0 < min_scale <= max_scale:
            raise ValueError(f"ResizeScale: need 0 < min_scale <= max_scale, got {min_scale}, {max_scale}.")
        self.min_scale, self.max_scale = float(min_scale), float(max_scale)
        self.target_height, self.target_width = int(target_height), int(target_width)

    def get_transform(self, image: np.ndarray, sem_seg: Optional[np.ndarray] = None) -> Transform:
        h, w = image.shape[:2]
        scale = np.random.uniform(self.min_scale, self.max_scale)
        factor = min(self.target_height * scale / h, self.target_width * scale / w)
        return ResizeTransform(h, w, int(round(h * factor)), int(round(w * factor)))


class FixedSizeCrop(Augmentation):
    """Random crop of ``crop_size`` (h, w) where the image is larger; one uniform draw places the window along
    both axes, as detectron2's ``FixedSizeCrop``. Smaller images are left as they are: the LSJ mappers pad to
    ``crop_size`` themselves, with the right value for each kind of map (image 128, labels ignore, segments
    void)."""

    def __init__(self, crop_size: Sequence[int]):
        self.crop_size = (int(crop_size[0]), int(crop_size[1]))

    def get_transform(self, image: np.ndarray, sem_seg: Optional[np.ndarray] = None) -> Transform:
        h, w = image.shape[:2]
        ch, cw = min(self.crop_size[0], h), min(self.crop_size[1], w)
        u = np.random.uniform(0.0, 1.0)
        return CropTransform(int(round((w - cw) * u)), int(round((h - ch) * u)), cw, ch)


class RandomFlip(Augmentation):
    """Flip horizontally (or vertically) with probability ``prob``."""

    def __init__(self, prob: float = 0.5, *, horizontal: bool = True, vertical: bool = False):
        if horizontal == vertical:
            raise ValueError("RandomFlip needs exactly one of horizontal / vertical; use two RandomFlips for both.")
        self.prob = float(prob)
        self.horizontal = horizontal
        self.vertical = vertical

    def get_transform(self, image: np.ndarray, sem_seg: Optional[np.ndarray] = None) -> Transform:
        h, w = image.shape[:2]
        if np.random.uniform() < self.prob:
            return HFlipTransform(w) if self.horizontal else VFlipTransform(h)
        return NoOpTransform()


class RandomBrightness(Augmentation):
    """Scale the intensities by w ~ U(intensity_min, intensity_max) (detectron2's ``RandomBrightness``)."""

    def __init__(self, intensity_min: float, intensity_max: float):
        self.intensity_min, self.intensity_max = float(intensity_min), float(intensity_max)

    def get_transform(self, image: np.ndarray, sem_seg: Optional[np.ndarray] = None) -> Transform:
        w = np.random.uniform(self.intensity_min, self.intensity_max)
        return BlendTransform(src_image=0.0, src_weight=1 - w, dst_weight=w)


class RandomContrast(Augmentation):
    """Blend with the image's mean intensity: ``(1 - w) * mean + w * image``, w ~ U(min, max) (detectron2's)."""

    def __init__(self, intensity_min: float, intensity_max: float):
        self.intensity_min, self.intensity_max = float(intensity_min), float(intensity_max)

    def get_transform(self, image: np.ndarray, sem_seg: Optional[np.ndarray] = None) -> Transform:
        w = np.random.uniform(self.intensity_min, self.intensity_max)
        return BlendTransform(src_image=float(image.mean()), src_weight=1 - w, dst_weight=w)


class RandomSaturation(Augmentation):
    """Blend an RGB image with its grey version (weights 0.299, 0.587, 0.114): ``(1 - w) * grey + w * image``,
    w ~ U(min, max) (detectron2's ``RandomSaturation``)."""

    def __init__(self, intensity_min: float, intensity_max: float):
        self.intensity_min, self.intensity_max = float(intensity_min), float(intensity_max)

    def get_transform(self, image: np.ndarray, sem_seg: Optional[np.ndarray] = None) -> Transform:
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"RandomSaturation needs an [H, W, 3] RGB image, got shape {image.shape}.")
        w = np.random.uniform(self.intensity_min, self.intensity_max)
        grey = image.astype(np.float32).dot(np.array([0.299, 0.587, 0.114], dtype=np.float32))[:, :, None]
        return BlendTransform(src_image=grey, src_weight=1 - w, dst_weight=w)


def apply_augmentations(augmentations: Sequence[Union[Augmentation, Transform]], image: np.ndarray,
                        sem_seg: Optional[np.ndarray] = None) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Apply augmentations (sampled in order, each on the previous output) to an image and its labels.

    Args:
        augmentations: :class:`Augmentation` (sampled per call) or :class:`Transform` (applied as is).
        image: [H, W, C] uint8.
        sem_seg: optional [H, W] integer label map aligned with ``image``.
    Returns:
        (image [H', W', C], sem_seg [H', W'] or None)
    """
    image, sem_seg, _ = apply_augmentations_with_maps(augmentations, image, sem_seg, ())
    return image, sem_seg


def apply_augmentations_with_maps(augmentations: Sequence[Union[Augmentation, Transform]], image: np.ndarray,
                                  sem_seg: Optional[np.ndarray], maps: Sequence[np.ndarray]
                                  ) -> Tuple[np.ndarray, Optional[np.ndarray], List[np.ndarray]]:
    """:func:`apply_augmentations`, also transforming more [H, W] integer ``maps`` (e.g. panoptic segment ids)
    as segmentations. Augmentations sample from the image and ``sem_seg`` only."""
    maps = list(maps)
    for aug in augmentations:
        tfm = aug.get_transform(image, sem_seg) if isinstance(aug, Augmentation) else aug
        if not isinstance(tfm, Transform):
            raise TypeError(f"{aug!r} is neither an Augmentation nor a Transform.")
        image = tfm.apply_image(image)
        if sem_seg is not None:
            sem_seg = tfm.apply_segmentation(sem_seg)
        maps = [tfm.apply_segmentation(m) for m in maps]
    return image, sem_seg, maps

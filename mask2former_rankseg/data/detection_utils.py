"""Image reading and size checks shared by the dataset mappers.

``read_image`` returns an ``[H, W, C]`` uint8 numpy array (``[H, W]`` for a label map read with
``format=None``); every failure to read becomes one :class:`ImageReadError` naming the file.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

import numpy as np
from PIL import Image, ImageOps

__all__ = ["ImageReadError", "SizeMismatchError", "read_image", "check_image_size", "SUPPORTED_FORMATS"]

SUPPORTED_FORMATS = ("RGB", "BGR", "L")

# Exceptions PIL raises for missing, truncated or malformed files (SyntaxError: some broken PNG chunks).
_PIL_READ_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


class ImageReadError(OSError):
    """An image or annotation file that does not exist or cannot be decoded."""


class SizeMismatchError(ValueError):
    """An image whose size differs from its dataset dict or from its annotation."""


def read_image(file_name: str | os.PathLike, format: Optional[str] = None) -> np.ndarray:
    """Read an image file, applying its EXIF orientation.

    Args:
        file_name: path of the image.
        format: "RGB" or "BGR" -> [H, W, 3] uint8; "L" -> [H, W, 1] uint8 (grey);
            None -> the file's own mode as stored (e.g. [H, W] for a label PNG).
    Returns:
        The decoded image as a numpy array.
    Raises:
        ImageReadError: the file is missing, unreadable or corrupt (the message names it).
        ValueError: ``format`` is not supported.
    """
    if format is not None and format not in SUPPORTED_FORMATS:
        raise ValueError(f"Unsupported image format {format!r}; use one of {SUPPORTED_FORMATS} or None.")
    path = os.fspath(file_name)
    if not os.path.isfile(path):
        raise ImageReadError(f"Cannot read image {path}: file does not exist.")
    try:
        with Image.open(path) as image:
            image.load()  # decode now so truncated files fail here, not later
            image = ImageOps.exif_transpose(image)
            if format is not None:
                image = image.convert("RGB" if format == "BGR" else format)
            array = np.asarray(image)
    except _PIL_READ_ERRORS as e:
        raise ImageReadError(f"Cannot read image {path}: {type(e).__name__}: {e}") from e
    if format == "L":
        array = array[:, :, None]
    elif format == "BGR":
        array = array[:, :, ::-1]
    return np.ascontiguousarray(array)


def check_image_size(dataset_dict: Dict[str, Any], image: np.ndarray,
                     sem_seg: Optional[np.ndarray] = None) -> None:
    """Check the image against the dict's ``height``/``width`` and the annotation's size.

    Fills ``height`` and ``width`` into ``dataset_dict`` when absent (the original image size).

    Args:
        dataset_dict: detectron2 dataset dict (``file_name``, optional ``height``, ``width``,
            ``sem_seg_file_name``).
        image: [H, W, C] image read from ``file_name``.
        sem_seg: optional [H, W] label map read from ``sem_seg_file_name``.
    Raises:
        SizeMismatchError: naming the file whose size disagrees.
    """
    h, w = image.shape[:2]
    file_name = dataset_dict.get("file_name", "<unknown file>")
    if "height" in dataset_dict or "width" in dataset_dict:
        expected = (dataset_dict.get("height"), dataset_dict.get("width"))
        if expected != (h, w):
            raise SizeMismatchError(
                f"Image {file_name} has size (h, w)={(h, w)} but its dataset dict says {expected}. "
                "Fix the height/width in the dataset dict or the image file."
            )
    else:
        dataset_dict["height"] = h
        dataset_dict["width"] = w
    if sem_seg is not None and tuple(sem_seg.shape[:2]) != (h, w):
        gt_name = dataset_dict.get("sem_seg_file_name", "<unknown annotation>")
        raise SizeMismatchError(
            f"Annotation {gt_name} has size (h, w)={tuple(sem_seg.shape[:2])} but its image {file_name} "
            f"has {(h, w)}. The annotation must have the image's size."
        )

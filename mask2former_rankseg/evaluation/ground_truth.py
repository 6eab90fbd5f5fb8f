"""Reading semantic ground truth for evaluation (from the dataset dict's file or an in-memory map)."""

from __future__ import annotations

from typing import Dict

import numpy as np
from PIL import Image


def gt_source(input_dict: Dict) -> str:
    """Name of the ground truth of one input, for error messages."""
    path = input_dict.get("sem_seg_file_name")
    return str(path) if path is not None else f"'sem_seg' of {input_dict.get('file_name', '<unnamed input>')}"


def load_sem_seg_gt(input_dict: Dict) -> np.ndarray:
    """[H, W] int64 label map of one image at its original size.

    Read from ``sem_seg_file_name`` (a single-channel PNG: mode L, P or I) when the dict has it, else
    from its ``sem_seg`` tensor/array ([H, W]).
    """
    path = input_dict.get("sem_seg_file_name")
    if path is not None:
        try:
            with Image.open(path) as img:
                gt = np.asarray(img, dtype=np.int64)
        except (OSError, ValueError) as e:
            raise OSError(f"Cannot read ground truth {path}: {e}") from e
    elif "sem_seg" in input_dict:
        sem_seg = input_dict["sem_seg"]
        gt = np.asarray(sem_seg.cpu() if hasattr(sem_seg, "cpu") else sem_seg, dtype=np.int64)
    else:
        raise KeyError(
            f"Input {input_dict.get('file_name', '<unnamed>')} has neither 'sem_seg_file_name' nor 'sem_seg': "
            "the evaluator needs ground truth."
        )
    if gt.ndim != 2:
        raise ValueError(
            f"Ground truth {gt_source(input_dict)} has shape {gt.shape}; expected a single-channel [H, W] "
            "label map (an RGB/colour-coded PNG must first be converted to class indices)."
        )
    return gt

"""Reading semantic ground truth for evaluation (from the dataset dict's file or an in-memory map)."""

from __future__ import annotations

from typing import Dict

import numpy as np
from PIL import Image


def load_sem_seg_gt(input_dict: Dict) -> np.ndarray:
    """[H, W] int64 label map of one image: ``sem_seg_file_name`` if present, else the ``sem_seg`` tensor."""
    path = input_dict.get("sem_seg_file_name")
    if path is not None:
        try:
            with Image.open(path) as img:
                return np.asarray(img, dtype=np.int64)
        except (OSError, ValueError) as e:
            raise OSError(f"Cannot read ground truth {path}: {e}") from e
    if "sem_seg" in input_dict:
        return np.asarray(input_dict["sem_seg"].cpu(), dtype=np.int64)
    raise KeyError(
        f"Input {input_dict.get('file_name', '<unnamed>')} has neither 'sem_seg_file_name' nor 'sem_seg': "
        "the evaluator needs ground truth."
    )

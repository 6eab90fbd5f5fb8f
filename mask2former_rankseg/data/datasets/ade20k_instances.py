"""ADE20K instance annotations -> COCO panoptic segments and COCO instance annotations (used by
``datasets/prepare_ade20k_pan_seg.py`` and ``datasets/prepare_ade20k_ins_seg.py``).

Inputs, per image, from the SceneParsing release:

* ``annotations/<split>/<stem>.png``: semantic labels, 0 = unlabelled, 1..150 = classes;
* ``annotations_instance/<split>/<stem>.png``: RGB, R = instance class 1..100 (0 = none), G = instance id
  (0 = none); instance class i is semantic class ``ADE20K_INSTANCE_CATEGORIES[i - 1]`` (0-based).

As upstream's scripts: stuff classes (the 50 semantic classes that are not instance classes) become one
segment per class from the semantic map; every instance becomes a thing segment, painted over the stuff.
Segment ids are 1, 2, ... in that order.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np

from .instance import ADE20K_INSTANCE_CATEGORIES

__all__ = ["THING_SEMANTIC_IDS", "ade20k_instances", "ade20k_panoptic", "mask_bbox"]

THING_SEMANTIC_IDS = frozenset(cid for cid, _ in ADE20K_INSTANCE_CATEGORIES)
"""0-based semantic ids of the 100 thing classes."""


def mask_bbox(mask: np.ndarray) -> List[int]:
    """[x, y, width, height] of the True pixels of ``mask`` [H, W] (COCO's box)."""
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    return [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]


def ade20k_instances(instance_png: np.ndarray, source: str = "instance PNG") -> List[Tuple[int, np.ndarray]]:
    """(0-based semantic class, mask [H, W] bool) of every instance, in instance-id order.

    Raises:
        ValueError: the PNG is not RGB, an instance spans several classes, or a class is outside 1..100.
    """
    if instance_png.ndim != 3 or instance_png.shape[2] < 2:
        raise ValueError(f"{source}: expected an RGB instance PNG, got shape {instance_png.shape}.")
    classes, ids = instance_png[..., 0], instance_png[..., 1]
    out = []
    for instance_id in np.unique(ids):
        if instance_id == 0:
            continue
        mask = ids == instance_id
        found = np.unique(classes[mask])
        if len(found) != 1 or not 1 <= int(found[0]) <= len(ADE20K_INSTANCE_CATEGORIES):
            raise ValueError(f"{source}: instance {int(instance_id)} has classes {found.tolist()}; expected one class "
                             f"in 1..{len(ADE20K_INSTANCE_CATEGORIES)}.")
        out.append((ADE20K_INSTANCE_CATEGORIES[int(found[0]) - 1][0], mask))
    return out


def ade20k_panoptic(semantic_png: np.ndarray, instance_png: np.ndarray, source: str = "image"
                    ) -> Tuple[np.ndarray, List[Dict]]:
    """Segment ids [H, W] int64 (0 = void) and COCO ``segments_info`` (0-based semantic category ids)."""
    if semantic_png.shape[:2] != instance_png.shape[:2]:
        raise ValueError(f"{source}: semantic {semantic_png.shape[:2]} and instance {instance_png.shape[:2]} maps "
                         "differ in size.")
    semantic = semantic_png.astype(np.int64) - 1  # -1 = unlabelled
    segments = np.zeros(semantic.shape, dtype=np.int64)
    info: List[Dict] = []

    def add(mask: np.ndarray, category: int) -> None:
        segments[mask] = len(info) + 1
        info.append({"id": len(info) + 1, "category_id": int(category), "iscrowd": 0})

    for category in np.unique(semantic):
        if category >= 0 and int(category) not in THING_SEMANTIC_IDS:
            add(semantic == category, int(category))
    for category, mask in ade20k_instances(instance_png, source):
        add(mask, category)
    # Things are painted over stuff: areas and boxes are those of the final map; a segment left without
    # pixels is dropped and the ids renumbered.
    remap = np.zeros(len(info) + 1, dtype=np.int64)
    kept: List[Dict] = []
    for segment in info:
        mask = segments == segment["id"]
        if mask.any():
            remap[segment["id"]] = len(kept) + 1
            kept.append({**segment, "id": len(kept) + 1, "area": int(mask.sum()), "bbox": mask_bbox(mask)})
    return remap[segments], kept

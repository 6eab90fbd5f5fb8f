"""Drawing objects: shape and texture masks, non-destructive placement of overlapping objects, painting.

Sizes are given for ``REFERENCE_SIZE`` x ``REFERENCE_SIZE`` images and scale with the image size.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

from .categories import MORE_SHAPES, MORE_TEXTURES, SyntheticCategory

__all__ = [
    "REFERENCE_SIZE",
    "MIN_VISIBLE_PX",
    "MIN_VISIBLE_FRACTION",
    "NUM_OBJECTS_RANGE",
    "TEXTURE_PERIOD",
    "shape_mask",
    "texture_mask",
    "place_objects",
    "paint_objects",
]

REFERENCE_SIZE = 128  # object sizes and areas below are for 128x128 images and scale with the image size
OBJECT_SIZE_RANGE = (20, 60)  # bounding extent of an object, pixels
MIN_VISIBLE_PX = 60  # smallest visible area of an object, pixels
MIN_VISIBLE_FRACTION = 0.7  # of the object's own (in-image) area
NUM_OBJECTS_RANGE = (2, 6)
TEXTURE_PERIOD = 8  # stripe / checker period, pixels
DARK_FACTOR = 0.4  # the second tone of striped / checkered objects is the colour times this
PLACEMENT_TRIES = 30


def shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    """Boolean mask of ``shape`` of half-extent ``r`` (pixels) on offsets (dx, dy) from its centre."""
    if shape == "disc":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        return (np.abs(dx) <= r) & (np.abs(dy) <= r)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= r
    if shape == "triangle":  # apex up, base down
        return (dy >= -r) & (dy <= r) & (np.abs(dx) <= (dy + r) / 2)
    if shape == "ring":
        d2 = dx * dx + dy * dy
        return (d2 <= r * r) & (d2 >= (0.55 * r) ** 2)
    if shape == "cross":
        arm = r / 3
        return ((np.abs(dx) <= arm) & (np.abs(dy) <= r)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= r))
    raise ValueError(f"Unknown shape {shape!r}; known: {MORE_SHAPES}.")


def texture_mask(texture: str, xs: np.ndarray, ys: np.ndarray, period: int, rng: np.random.Generator) -> np.ndarray:
    """True where the texture shows the object's colour, False where its dark tone."""
    half = max(period // 2, 1)
    ox, oy = rng.integers(0, period, size=2)
    if texture == "solid":
        return np.ones(np.broadcast(xs, ys).shape, dtype=bool)
    if texture == "hstriped":
        return np.broadcast_to((ys + oy) % period < half, np.broadcast(xs, ys).shape)
    if texture == "vstriped":
        return np.broadcast_to((xs + ox) % period < half, np.broadcast(xs, ys).shape)
    if texture == "dstriped":
        return (xs + ys + ox) % period < half
    if texture == "checkered":
        return ((xs + ox) // half + (ys + oy) // half) % 2 == 0
    if texture == "dotted":
        return ~((((xs + ox) % period) < half) & (((ys + oy) % period) < half))
    raise ValueError(f"Unknown texture {texture!r}; known: {MORE_TEXTURES}.")


def place_objects(rng: np.random.Generator, size: int, categories: Sequence[SyntheticCategory],
                  xs: np.ndarray, ys: np.ndarray, min_visible: float,
                  distinct: bool = True) -> Tuple[np.ndarray, List[int]]:
    """Choose 2-6 categories (distinct ones unless ``distinct`` is False) and place them one on top of the
    other.

    A placement is kept only if every object (the new one and those below it) keeps a visible area of
    at least ``min_visible`` pixels and ``MIN_VISIBLE_FRACTION`` of its own area.

    Returns:
        owner [size, size] int16 (paint index of the object visible at each pixel, -1 = background),
        the category ids in paint order.
    """
    scale = size / REFERENCE_SIZE
    num_objects = int(rng.integers(NUM_OBJECTS_RANGE[0], NUM_OBJECTS_RANGE[1] + 1))
    chosen = rng.choice(len(categories), size=num_objects, replace=not distinct)
    owner = np.full((size, size), -1, dtype=np.int16)
    full_areas: List[int] = []
    placed: List[int] = []
    for cat_id in chosen:
        shape = categories[int(cat_id)].shape
        for _ in range(PLACEMENT_TRIES):
            r = rng.uniform(*OBJECT_SIZE_RANGE) * scale / 2
            cx, cy = rng.uniform(r, size - r, size=2)  # whole object inside the image
            mask = shape_mask(shape, xs - cx, ys - cy, r)
            area = int(mask.sum())
            if area < min_visible:
                continue
            candidate = np.where(mask, np.int16(len(placed)), owner)
            visible = np.bincount((candidate + 1).ravel(), minlength=len(placed) + 2)[1:]
            needed = np.maximum(min_visible, MIN_VISIBLE_FRACTION * np.asarray(full_areas + [area]))
            if np.all(visible >= needed):
                owner = candidate
                full_areas.append(area)
                placed.append(int(cat_id))
                break
    return owner, placed


def paint_objects(rng: np.random.Generator, image: np.ndarray, owner_map: np.ndarray, placed: Sequence[int],
                  categories: Sequence[SyntheticCategory], xs: np.ndarray, ys: np.ndarray, period: int) -> None:
    """Paint each placed object's visible pixels (``owner_map == index``) with its colour and texture, in place on
    ``image`` [H, W, 3] float32."""
    for index, cat_id in enumerate(placed):
        cat = categories[cat_id]
        mine = owner_map == index
        rows, cols = np.nonzero(mine.any(axis=1))[0], np.nonzero(mine.any(axis=0))[0]
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        visible = owner_map[box] == index
        color = np.asarray(cat.color, dtype=np.float32) + rng.uniform(-12, 12, size=3).astype(np.float32)
        bright = texture_mask(cat.texture, xs[:, box[1]], ys[box[0]], period, rng)
        pixels = np.where(bright[..., None], color, color * DARK_FACTOR)
        image[box][visible] = pixels[visible]

"""The category tables of the synthetic datasets.

- semantic: 108 categories (3 shapes x 12 colours x 3 textures), or 864 (6 x 24 x 6, the many-class regime of
  ADE20K-Full) -- :func:`semantic_categories`;
- panoptic: those 108 as things plus 8 background stuff categories -- :func:`panoptic_categories`;
- video: 48 categories (4 shapes x 12 colours, solid) -- :func:`video_categories`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np

from ...constants import IGNORE_LABEL, IGNORE_LABEL_16BIT

__all__ = [
    "SHAPES",
    "COLORS",
    "TEXTURES",
    "MORE_SHAPES",
    "MORE_COLORS",
    "MORE_TEXTURES",
    "CATEGORY_SETS",
    "VIDEO_SHAPES",
    "STUFF_CATEGORIES",
    "SyntheticCategory",
    "label_encoding",
    "semantic_categories",
    "panoptic_categories",
    "video_categories",
    "ytvis_categories",
]

RGB = Tuple[int, int, int]

SHAPES: Tuple[str, ...] = ("disc", "ring", "cross")
COLORS: Dict[str, RGB] = {
    "red": (225, 30, 30),
    "orange": (245, 130, 20),
    "yellow": (240, 230, 40),
    "lime": (150, 230, 40),
    "green": (20, 150, 40),
    "teal": (20, 140, 130),
    "cyan": (60, 230, 240),
    "blue": (30, 60, 230),
    "purple": (120, 40, 190),
    "magenta": (230, 50, 210),
    "white": (250, 250, 250),
    "black": (20, 20, 20),
}
TEXTURES: Tuple[str, ...] = ("solid", "hstriped", "checkered")

# The many-class variant: every shape and texture the renderer knows, and 12 more colours (each at least ~50 RGB
# units from the others, so the +-12 per-object jitter keeps them apart).
MORE_SHAPES: Tuple[str, ...] = SHAPES + ("square", "diamond", "triangle")
MORE_COLORS: Dict[str, RGB] = {
    **COLORS,
    "pink": (250, 160, 200),
    "brown": (130, 70, 20),
    "olive": (120, 120, 20),
    "navy": (20, 20, 110),
    "maroon": (120, 10, 40),
    "beige": (230, 210, 160),
    "sky": (120, 180, 250),
    "mint": (150, 250, 190),
    "violet": (190, 130, 250),
    "gold": (200, 170, 20),
    "salmon": (250, 110, 100),
    "indigo": (70, 20, 130),
}
MORE_TEXTURES: Tuple[str, ...] = TEXTURES + ("vstriped", "dstriped", "dotted")

CATEGORY_SETS: Dict[int, Tuple[Tuple[str, ...], Dict[str, RGB], Tuple[str, ...]]] = {
    108: (SHAPES, COLORS, TEXTURES),
    864: (MORE_SHAPES, MORE_COLORS, MORE_TEXTURES),
}
"""Number of semantic categories -> (shapes, colours, textures) whose product they are."""

VIDEO_SHAPES: Tuple[str, ...] = ("disc", "square", "triangle", "cross")

STUFF_TONES: Dict[str, RGB] = {
    "grey": (125, 125, 125), "sand": (185, 160, 115), "slate": (80, 95, 125), "moss": (95, 125, 80),
}
STUFF_PATTERNS = ("plain", "lined")
STUFF_CATEGORIES: Tuple[Tuple[str, RGB, str], ...] = tuple(
    (f"{tone}-{pattern}", color, pattern) for tone, color in STUFF_TONES.items() for pattern in STUFF_PATTERNS
)
"""(name, colour, pattern) of the 8 panoptic stuff categories."""


@dataclass(frozen=True)
class SyntheticCategory:
    """One category: ``name`` is "<colour>-<texture>-<shape>" (e.g. "red-hstriped-disc"), or "<colour>-<shape>"
    for the video categories."""

    id: int
    name: str
    color_name: str
    texture: str
    shape: str
    color: RGB


def label_encoding(num_classes: int) -> Tuple[type, int]:
    """(numpy dtype, ignore label) of the label maps: uint8 with 255 up to 255 categories, else uint16 with 65535
    (as ADE20K-Full's)."""
    return (np.uint8, IGNORE_LABEL) if num_classes < IGNORE_LABEL else (np.uint16, IGNORE_LABEL_16BIT)


def semantic_categories(num_classes: int = 108) -> List[SyntheticCategory]:
    """The categories of the ``num_classes`` variant (108 or 864), ids ordered by (shape, colour, texture)."""
    if num_classes not in CATEGORY_SETS:
        raise ValueError(f"No synthetic semantic variant with {num_classes} categories; choose one of "
                         f"{sorted(CATEGORY_SETS)}.")
    shapes, colors, textures = CATEGORY_SETS[num_classes]
    cats = []
    for shape in shapes:
        for color_name, color in colors.items():
            for texture in textures:
                cats.append(
                    SyntheticCategory(len(cats), f"{color_name}-{texture}-{shape}", color_name, texture, shape, color)
                )
    return cats


def panoptic_categories() -> List[Dict]:
    """COCO panoptic ``categories``: the 108 semantic categories as things (ids 1..108), then the 8 stuff categories
    (ids 109..116)."""
    things = [{"id": c.id + 1, "name": c.name, "isthing": 1, "color": list(c.color)} for c in semantic_categories()]
    stuff = [{"id": len(things) + 1 + i, "name": name, "isthing": 0, "color": list(color)}
             for i, (name, color, _) in enumerate(STUFF_CATEGORIES)]
    return things + stuff


def video_categories() -> List[SyntheticCategory]:
    """The 48 video categories "<colour>-<shape>" (ids 0..47, ordered by shape, then colour)."""
    return [SyntheticCategory(i * len(COLORS) + j, f"{color_name}-{shape}", color_name, "solid", shape, color)
            for i, shape in enumerate(VIDEO_SHAPES) for j, (color_name, color) in enumerate(COLORS.items())]


def ytvis_categories() -> Tuple[Tuple[int, str, RGB], ...]:
    """(dataset id 1..48, name, colour) of the video categories, as the YouTube-VIS registration takes them."""
    return tuple((c.id + 1, c.name, c.color) for c in video_categories())

"""Deterministic class colours for datasets whose upstream release defines none."""

from __future__ import annotations

from typing import List

__all__ = ["voc_colormap"]


def voc_colormap(num_classes: int) -> List[List[int]]:
    """PASCAL VOC's colour map for indices ``0 .. num_classes - 1`` as ``[[r, g, b], ...]``.

    The bits of index ``i`` are dealt out three at a time, lowest first, to the most significant free bit of
    red, green and blue: index 1 is (128, 0, 0), 2 is (0, 128, 0), 3 is (128, 128, 0), 8 is (64, 0, 0).
    Indices up to 2**24 - 1 get distinct colours. RankSeg's COCO+LVIS palette is this map for 0..1283.
    """
    colors = []
    for index in range(num_classes):
        rgb = [0, 0, 0]
        bits, shift = index, 7
        while bits:
            for channel in range(3):
                rgb[channel] |= ((bits >> channel) & 1) << shift
            bits >>= 3
            shift -= 1
        colors.append(rgb)
    return colors

#!/usr/bin/env python3
"""Convert an mmseg / open-mmlab ResNet checkpoint (``ResNetV1c``) to a detectron2-format ``.pkl`` for
``MODEL.WEIGHTS``.

    python tools/convert-mmseg-resnet-to-d2.py resnet101_v1c-e67eebb6.pth R-101-V1c.pkl

Input: the ImageNet weights mmseg's configs name ``open-mmlab://resnet50_v1c`` / ``resnet101_v1c`` (keys
``stem.{0,1,3,4,6,7}.*``, ``layer{i}.{j}.conv{k}/bn{k}.*``, ``layer{i}.0.downsample.{0,1}.*``), or a whole
mmseg/mmcls model checkpoint, whose ``backbone.*`` tensors are kept. The output holds the backbone only (a
classifier ``fc.*`` and BatchNorm counters are dropped) under detectron2's ResNet names, with
``matching_heuristics`` so that the names are matched into ``backbone.`` when loaded. mmseg's ResNetV1c-D8, as
RankSeg's per-pixel configs build it (stride in the 3x3 conv, RGB input normalised by ImageNet statistics)::

    MODEL:
      WEIGHTS: "R-101-V1c.pkl"
      PIXEL_MEAN: [123.675, 116.280, 103.530]
      PIXEL_STD: [58.395, 57.120, 57.375]
      BACKBONE: {NAME: "build_resnet_deeplab_backbone", FREEZE_AT: 0}
      RESNETS: {DEPTH: 101, NORM: "SyncBN", STEM_TYPE: "deeplab", STEM_OUT_CHANNELS: 64, STRIDE_IN_1X1: False,
                RES4_DILATION: 2, RES5_DILATION: 4, RES5_MULTI_GRID: [1, 1, 1], CONTRACT_DILATION: True}
    INPUT:
      FORMAT: "RGB"
"""

from __future__ import annotations

import logging
import sys
from typing import List, Optional

from mask2former_rankseg.utils.convert import (
    ConversionError,
    converter_main,
    mmseg_resnet_name,
    read_state_dict,
    write_d2_pkl,
)

logger = logging.getLogger("convert-mmseg-resnet-to-d2")

PREFIX = "backbone."


def convert(source: str, output: str) -> int:
    """Convert ``source`` into ``output``; returns the number of tensors written."""
    state = read_state_dict(source)
    if any(k.startswith(PREFIX) for k in state):  # a whole model: keep its backbone
        dropped = sorted(k for k in state if not k.startswith(PREFIX))
        if dropped:
            logger.info("dropped %d tensors outside %r (e.g. %s)", len(dropped), PREFIX, dropped[0])
        state = {k[len(PREFIX):]: v for k, v in state.items() if k.startswith(PREFIX)}
    if not any(k.startswith("layer1.") for k in state):
        raise ConversionError(f"{source}: no 'layer1.*' keys; this is not an mmseg ResNet state dict "
                              f"(first keys: {sorted(state)[:5]}).")
    converted = {}
    for name, tensor in state.items():
        try:
            new = mmseg_resnet_name(name)
        except ConversionError as e:
            raise ConversionError(f"{source}: {e}") from e
        if new is None:
            logger.info("dropped %s", name)
            continue
        logger.debug("%s -> %s", name, new)
        converted[new] = tensor
    return write_d2_pkl(output, converted, author="open-mmlab")


def main(argv: Optional[List[str]] = None) -> int:
    return converter_main(convert, __doc__, "mmseg / open-mmlab ResNet(V1c) .pth (a state dict)", argv)


if __name__ == "__main__":
    sys.exit(main())

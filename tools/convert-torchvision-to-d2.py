#!/usr/bin/env python3
"""Convert a torchvision ResNet checkpoint to a detectron2-format ``.pkl`` for ``MODEL.WEIGHTS``.

    python tools/convert-torchvision-to-d2.py resnet50-0676ba61.pth R-50.pkl

The output holds the backbone only (the ImageNet classifier ``fc`` and BatchNorm counters are dropped) under
detectron2's ResNet names, with ``matching_heuristics`` so that the names are matched into ``backbone.``
when loaded. torchvision's ResNets put the stride in the 3x3 convolution and take RGB input normalised by
ImageNet statistics, so use them with::

    MODEL:
      WEIGHTS: "R-50.pkl"
      PIXEL_MEAN: [123.675, 116.280, 103.530]
      PIXEL_STD: [58.395, 57.120, 57.375]
      RESNETS: {DEPTH: 50, STRIDE_IN_1X1: False}
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
    read_state_dict,
    torchvision_resnet_name,
    write_d2_pkl,
)

logger = logging.getLogger("convert-torchvision-to-d2")


def convert(source: str, output: str) -> int:
    """Convert ``source`` into ``output``; returns the number of tensors written."""
    state = read_state_dict(source)
    if not any(k.startswith("layer1.") for k in state):
        raise ConversionError(f"{source}: no 'layer1.*' keys; this is not a torchvision ResNet state dict "
                              f"(first keys: {sorted(state)[:5]}).")
    converted = {}
    for name, tensor in state.items():
        new = torchvision_resnet_name(name)
        if new is None:
            logger.info("dropped %s", name)
            continue
        logger.debug("%s -> %s", name, new)
        converted[new] = tensor
    return write_d2_pkl(output, converted, author="torchvision")


def main(argv: Optional[List[str]] = None) -> int:
    return converter_main(convert, __doc__, 'torchvision ResNet .pth (a state dict)', argv)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Convert an official Swin Transformer checkpoint to a detectron2-format ``.pkl`` for ``MODEL.WEIGHTS``.

    wget https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_tiny_patch4_window7_224.pth
    python tools/convert-pretrained-swin-model-to-d2.py swin_tiny_patch4_window7_224.pth swin_t.pkl

The input is a file of microsoft/Swin-Transformer (a dict holding the state dict under ``model``; a bare state
dict is accepted too). Its names already are ``D2SwinTransformer``'s, so, like upstream Mask2Former's converter,
this keeps **every** tensor as it is, the ImageNet classifier ``head.*``, the final ``norm.*`` and the
``attn_mask`` buffers included (the model ignores them when loading), and only turns tensors into numpy arrays
in ``{"model": ..., "__author__": "third_party", "matching_heuristics": True}``. One addition: an absolute
position embedding stored as [1, N, C] (official layout) is reshaped to Mask2Former's [1, C, sqrt(N), sqrt(N)].
Then use it as upstream's Swin configs do (RGB input, ImageNet statistics)::

    MODEL:
      WEIGHTS: "swin_t.pkl"
      PIXEL_MEAN: [123.675, 116.280, 103.530]
      PIXEL_STD: [58.395, 57.120, 57.375]
    INPUT:
      FORMAT: "RGB"

For timm checkpoints (``layers.{i}.downsample`` at the start of a stage, ``head.fc``) use
``tools/convert-timm-swin-to-d2.py``.
"""

from __future__ import annotations

import logging
import math
import sys
from typing import Dict, List, Optional

import torch

from mask2former_rankseg.modeling.backbone.swin import OFFICIAL_SWIN_KEY
from mask2former_rankseg.utils.convert import ConversionError, converter_main, read_state_dict, write_d2_pkl

logger = logging.getLogger("convert-pretrained-swin-model-to-d2")

REQUIRED = ("patch_embed.proj.weight", "layers.0.blocks.0.attn.qkv.weight")


def check_official_swin(state: Dict[str, torch.Tensor], source: str) -> None:
    """Raise :class:`ConversionError` unless ``state`` uses official Swin (V1) names."""
    if any(k.startswith("backbone.") for k in state):
        raise ConversionError(f"{source}: names start with 'backbone.': this is a whole segmentation model "
                              "checkpoint, which MODEL.WEIGHTS loads as it is (no conversion needed).")
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise ConversionError(f"{source}: not a Swin Transformer state dict: no {missing} "
                              f"(first keys: {sorted(state)[:5]}).")
    timm_layout = "head.fc.weight" in state or (
        "layers.0.downsample.reduction.weight" not in state and "layers.1.downsample.reduction.weight" in state)
    if timm_layout:
        raise ConversionError(f"{source}: this is a timm Swin state dict (patch merging at the start of stages "
                              "or 'head.fc.*'); convert it with tools/convert-timm-swin-to-d2.py.")
    unknown = [k for k in state if not OFFICIAL_SWIN_KEY.fullmatch(k)]
    if unknown:
        raise ConversionError(f"{source}: {len(unknown)} names are not in an official Swin (V1) checkpoint, "
                              f"e.g. {sorted(unknown)[:5]} (Swin V2 and other variants are not supported).")


def convert(source: str, output: str) -> int:
    """Convert ``source`` into ``output``; returns the number of tensors written."""
    state = read_state_dict(source)
    check_official_swin(state, source)
    ape = state.get("absolute_pos_embed")
    if ape is not None and ape.dim() == 3:  # official [1, N, C] -> Mask2Former's [1, C, H, W]
        side = math.isqrt(ape.shape[1])
        if side * side != ape.shape[1]:
            raise ConversionError(f"{source}: absolute_pos_embed {tuple(ape.shape)} is not a square grid.")
        state["absolute_pos_embed"] = ape.transpose(1, 2).reshape(1, ape.shape[2], side, side)
        logger.info("absolute_pos_embed %s -> %s", tuple(ape.shape), tuple(state["absolute_pos_embed"].shape))
    return write_d2_pkl(output, state, author="third_party")


def main(argv: Optional[List[str]] = None) -> int:
    return converter_main(convert, __doc__, "official Swin checkpoint (.pth holding {'model': state dict})", argv)


if __name__ == "__main__":
    sys.exit(main())

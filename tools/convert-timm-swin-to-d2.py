#!/usr/bin/env python3
"""Convert a timm Swin Transformer (V1) state dict to a detectron2-format ``.pkl`` for ``MODEL.WEIGHTS``.

    python tools/convert-timm-swin-to-d2.py model.safetensors swin_base_patch4_window12_384.pkl

The input is a ``.pth``/``.bin`` (a state dict, possibly under ``model``/``state_dict``) or a ``.safetensors``
file of ``timm.models.swin_transformer.SwinTransformer``. timm (>= 0.9) puts the patch merging at the *start*
of stage i >= 1 and calls the classifier ``head.fc``; the output uses the official / Mask2Former names
(``D2SwinTransformer``'s), the same file layout as ``tools/convert-pretrained-swin-model-to-d2.py`` writes:

* ``layers.{i}.downsample.*`` -> ``layers.{i-1}.downsample.*``; ``head.fc.*`` -> ``head.*``;
* ``relative_position_index`` is written for every block (computed from its bias table; timm does not save it),
  ``attn_mask`` buffers are dropped (they depend on the input size; the model builds its own);
* the final ``norm.*`` and ``head.*`` are kept, as the official converter keeps them; the model ignores them.

Files in the official layout (timm < 0.9: ``layers.0.downsample`` present) only get ``head.fc`` renamed.
Use the result like an official one (RGB input with ImageNet statistics; ``INPUT.FORMAT: "RGB"``).
"""

from __future__ import annotations

import logging
import math
import re
import sys
from typing import Dict, List, Optional

import torch

from mask2former_rankseg.modeling.backbone.swin import OFFICIAL_SWIN_KEY, relative_position_index
from mask2former_rankseg.utils.convert import ConversionError, converter_main, read_state_dict, write_d2_pkl

logger = logging.getLogger("convert-timm-swin-to-d2")

REQUIRED = ("patch_embed.proj.weight", "layers.0.blocks.0.attn.qkv.weight")
_DOWNSAMPLE = re.compile(r"layers\.(\d+)\.downsample\.")


def timm_swin_to_official(state: Dict[str, torch.Tensor], source: str = "input") -> Dict[str, torch.Tensor]:
    """Rename a timm Swin state dict to official Swin names (see the module docstring)."""
    if any(k.startswith("backbone.") for k in state):
        raise ConversionError(f"{source}: names start with 'backbone.': this is a whole segmentation model "
                              "checkpoint, which MODEL.WEIGHTS loads as it is (no conversion needed).")
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise ConversionError(f"{source}: not a timm Swin Transformer state dict: no {missing} "
                              f"(first keys: {sorted(state)[:5]}).")
    v2 = [k for k in state if "logit_scale" in k or "cpb_mlp" in k]
    if v2:
        raise ConversionError(f"{source}: a Swin V2 state dict ({v2[0]}); only Swin V1 is supported.")
    stages_with_merging = sorted({int(m.group(1)) for k in state if (m := _DOWNSAMPLE.match(k))})
    at_stage_start = bool(stages_with_merging) and stages_with_merging[0] >= 1
    if not at_stage_start:
        logger.info("%s: patch merging already at the end of stages (official layout); only renaming head.fc",
                    source)
    out: Dict[str, torch.Tensor] = {}
    dropped = 0
    for name, tensor in state.items():
        if name.endswith(("relative_position_index", "attn_mask")):
            dropped += 1
            continue
        new = name
        if at_stage_start:
            new = _DOWNSAMPLE.sub(lambda m: f"layers.{int(m.group(1)) - 1}.downsample.", new, count=1)
        if new.startswith("head.fc."):
            new = "head." + new[len("head.fc."):]
        out[new] = tensor
    unknown = [k for k in out if not OFFICIAL_SWIN_KEY.fullmatch(k)]
    if unknown:
        raise ConversionError(f"{source}: {len(unknown)} names are not those of a timm Swin V1, "
                              f"e.g. {sorted(unknown)[:5]}.")
    if dropped:
        logger.info("dropped %d relative_position_index / attn_mask buffers", dropped)
    for name in [k for k in out if k.endswith(".attn.relative_position_bias_table")]:
        size = out[name].shape[0]
        side = math.isqrt(size)
        if side * side != size or side % 2 == 0:
            raise ConversionError(f"{source}: {name} has {size} rows, not (2w - 1)**2 of a square window "
                                  "(non-square windows are not supported by D2SwinTransformer).")
        out[name[: -len("relative_position_bias_table")] + "relative_position_index"] = (
            relative_position_index((side + 1) // 2))
    return out


def convert(source: str, output: str) -> int:
    """Convert ``source`` into ``output``; returns the number of tensors written."""
    state = timm_swin_to_official(read_state_dict(source), source)
    return write_d2_pkl(output, state, author="timm")


def main(argv: Optional[List[str]] = None) -> int:
    return converter_main(convert, __doc__, 'timm Swin state dict (.pth, .bin or .safetensors)', argv)


if __name__ == "__main__":
    sys.exit(main())

"""Weight-file conversion helpers shared by the ``tools/convert-*.py`` scripts.

Converted files use detectron2's model-zoo format: a pickle of ``{"model": {name: numpy array},
"__author__": str, "matching_heuristics": True}``, which :class:`~mask2former_rankseg.engine.Checkpointer`
reads with its restricted unpickler and matches into ``backbone.`` by name suffix.
"""

from __future__ import annotations

import argparse
import logging
import pickle
import re
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional

import torch
from safetensors.torch import load_file

from .file_io import atomic_write

__all__ = ["ConversionError", "converter_main", "mmseg_resnet_name", "read_state_dict", "torchvision_resnet_name",
           "write_d2_pkl"]

logger = logging.getLogger(__name__)


class ConversionError(ValueError):
    """The input is not a weight file of the expected kind (the message names the file and the fix)."""


def read_state_dict(path: str | Path, *, wrappers=("model", "state_dict")) -> Dict[str, torch.Tensor]:
    """Tensors of a ``.pth``/``.pt``/``.bin`` file (``torch.load(weights_only=True)``) or ``.safetensors`` file.

    A dict holding the state dict under one of ``wrappers`` is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: no such file.")
    try:
        if path.suffix == ".safetensors":
            data = load_file(str(path))
        else:
            data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is reported the same way
        raise ConversionError(f"{path}: not a readable PyTorch weight file ({type(e).__name__}: {e}).") from e
    for key in wrappers:
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
            break
    if not isinstance(data, dict) or not data or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ConversionError(
            f"{path}: expected a state dict of tensors (or a dict with one under {list(wrappers)}), got "
            f"{type(data).__name__}" + (f" with keys {sorted(data)[:5]}" if isinstance(data, dict) else "") + "."
        )
    return dict(data)


def write_d2_pkl(path: str | Path, weights: Mapping[str, torch.Tensor], author: str) -> int:
    """Write ``weights`` in detectron2's model-zoo format, atomically (nothing half-written on failure);
    bfloat16 tensors are stored as float32 (numpy has no bfloat16). Returns the number of tensors."""
    model = {k: (v.float() if v.dtype == torch.bfloat16 else v).detach().cpu().numpy() for k, v in weights.items()}
    payload = {"model": model, "__author__": author, "matching_heuristics": True}
    atomic_write(path, lambda f: pickle.dump(payload, f, protocol=pickle.HIGHEST_PROTOCOL))
    logger.info("Wrote %d tensors to %s", len(model), path)
    return len(model)


def converter_main(convert: Callable[[str, str], int], description: str, source_help: str,
                   argv: Optional[List[str]] = None) -> int:
    """Command line of a ``tools/convert-*.py`` script: ``SOURCE OUTPUT``; exit status 1 with one error line
    (naming the file and the problem) on a :class:`ConversionError`."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help=source_help)
    parser.add_argument("output", help="where to write the detectron2-format .pkl")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        convert(args.source, args.output)
    except ConversionError as e:
        logging.getLogger("convert").error("error: %s", e)
        return 1
    return 0


def torchvision_resnet_name(name: str) -> Optional[str]:
    """torchvision ResNet name -> detectron2 ResNet name, or None for what a backbone does not hold.

    ``conv1``/``bn1`` -> ``stem.conv1``/``stem.conv1.norm``; ``layer{i}`` -> ``res{i+1}``; ``bn{j}`` ->
    ``conv{j}.norm``; ``downsample.0``/``.1`` -> ``shortcut``/``shortcut.norm``. The ImageNet classifier
    (``fc.*``) and BatchNorm's ``num_batches_tracked`` counters return None.
    """
    if name.startswith("fc.") or name.endswith("num_batches_tracked"):
        return None
    if name.startswith("conv1."):
        return "stem." + name
    if name.startswith("bn1."):
        return "stem.conv1.norm." + name[len("bn1."):]
    name = re.sub(r"^layer(\d)\.", lambda m: f"res{int(m.group(1)) + 1}.", name)
    name = name.replace(".downsample.0.", ".shortcut.").replace(".downsample.1.", ".shortcut.norm.")
    return re.sub(r"\.bn(\d)\.", r".conv\1.norm.", name)


# mmseg's deep stem is an nn.Sequential of (conv, BN, ReLU) x 3: indices 2, 5 and 8 (ReLUs) hold no tensors.
_MMSEG_DEEP_STEM = {"0": "conv1", "1": "conv1.norm", "3": "conv2", "4": "conv2.norm", "6": "conv3", "7": "conv3.norm"}


def mmseg_resnet_name(name: str) -> Optional[str]:
    """mmseg / open-mmlab ResNet name (``ResNetV1c``: ``resnet50_v1c``, ``resnet101_v1c``) -> detectron2 ResNet
    name, or None for what a backbone does not hold.

    The deep stem's ``stem.{0,3,6}`` (convs) and ``stem.{1,4,7}`` (BNs) -> ``stem.conv{1,2,3}`` and
    ``stem.conv{1,2,3}.norm``; everything else as :func:`torchvision_resnet_name` (mmseg's blocks use
    torchvision's names: ``layer{i}.{j}.conv{k}``, ``.bn{k}``, ``.downsample.{0,1}``; a ``ResNetV1b``'s
    ``conv1``/``bn1`` stem too). Raises :class:`ConversionError` for another ``stem.*`` index.
    """
    match = re.match(r"stem\.(\d+)\.(.+)", name)
    if match is None:
        return torchvision_resnet_name(name)
    if name.endswith("num_batches_tracked"):
        return None
    index, rest = match.groups()
    if index not in _MMSEG_DEEP_STEM:
        raise ConversionError(f"{name}: not a tensor of mmseg's deep stem (convs stem.0/3/6, BNs stem.1/4/7).")
    return f"stem.{_MMSEG_DEEP_STEM[index]}.{rest}"

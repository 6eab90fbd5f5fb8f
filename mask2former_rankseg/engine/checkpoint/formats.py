"""Reading a local checkpoint file into ``{"model": {name: Tensor}, ...}``, by format: detectron2 / official
``.pkl`` weights (restricted unpickler), ``.safetensors`` files, Google's jax ViT ``.npz`` files (read by timm into
timm's names) or ``.pth`` files (``torch.load(weights_only=True)``)."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Any, Dict, Mapping

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ...modeling.backbone import load_jax_npz
from .errors import CheckpointError
from .safe_pickle import ArrayOnlyUnpickler, numpy_safe_globals

__all__ = ["load_checkpoint_file", "load_pkl"]

logger = logging.getLogger(__name__)


def load_pkl(path: str | Path) -> Dict[str, Any]:
    """Read a detectron2-style ``.pkl`` into ``{"model": {name: Tensor}, ...}``.

    * model-zoo format ``{"model": {...}, "__author__": ..., ["matching_heuristics": bool]}``: as is;
    * a bare dict of arrays with dotted (PyTorch) names: ``{"model": it, "matching_heuristics": True}``;
    * Caffe2 / Detectron1 files (``blobs``, names like ``res2_0_branch2a_w``): refused with an explanation.
    """
    try:
        with open(path, "rb") as f:
            data = ArrayOnlyUnpickler(f, encoding="latin1").load()
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path} is not a readable .pkl weight file ({type(e).__name__}: {e}).") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a dict of arrays, got {type(data).__name__}.")
    if "model" in data and isinstance(data["model"], dict):
        data = dict(data)
        if "__author__" in data:
            logger.info("Reading %s, written by %s", path, data["__author__"])
    else:
        weights = data.get("blobs", data)
        if "blobs" in data or _looks_like_caffe2(weights):
            raise CheckpointError(
                f"{path} is a Caffe2/Detectron1 weight file (names like 'res2_0_branch2a_w'); its names are not "
                "converted here. Use a torchvision-converted file instead (detectron2's "
                "tools/convert-torchvision-to-d2.py), as Mask2Former's configs do."
            )
        data = {"model": weights, "matching_heuristics": True}
    data["model"] = _to_tensors(data["model"], str(path))
    return data


def load_checkpoint_file(path: str) -> Dict[str, Any]:
    """Read a local ``.pth`` / ``.pkl`` / ``.safetensors`` / ``.npz`` file into a dict with a ``"model"`` state
    dict of tensors. A ``.safetensors`` file is one state dict (timm's and Hugging Face's format); a ``.npz`` file
    is a Google jax ViT checkpoint, converted to timm's names by :func:`~mask2former_rankseg.modeling.backbone.
    load_jax_npz` (needs timm).

    ``.pth`` files are read with ``weights_only=True``: tensors, numbers, strings, plain containers and
    numpy arrays only. Our own checkpoints are made of exactly these (the RNG states are stored as tensors
    and tuples, see :func:`mask2former_rankseg.engine.defaults.capture_rng_state`), so resuming never
    needs to trust a pickle; a file that holds anything else is refused, naming what it holds.
    """
    if path.endswith(".pkl"):
        return load_pkl(path)
    if path.endswith(".safetensors"):
        try:
            return {"model": load_file(path)}
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"{path} is not a readable .safetensors file ({type(e).__name__}: {e}).") from e
    if path.endswith(".npz"):
        try:
            return {"model": load_jax_npz(path)}
        except (ValueError, KeyError, OSError) as e:
            raise CheckpointError(f"{path}: cannot read it as a jax ViT checkpoint ({type(e).__name__}: {e}).") from e
    try:
        with torch.serialization.safe_globals(numpy_safe_globals()):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # noqa: BLE001 - only used to improve the message
            unsafe = []
        what = ", ".join(unsafe) if unsafe else str(e).splitlines()[0]
        raise CheckpointError(
            f"{path} holds objects other than tensors, arrays and plain containers ({what}); it is refused "
            "because loading it could run code. If you trust its author, re-save its state dict with "
            "torch.save({'model': state_dict}, path)."
        ) from None
    except (RuntimeError, EOFError, OSError) as e:
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(e).__name__}: {e}).") from e
    if isinstance(data, dict) and "model" not in data:
        if "state_dict" in data and isinstance(data["state_dict"], dict):
            data = {**data, "model": data.pop("state_dict")}
        elif all(isinstance(v, (torch.Tensor, np.ndarray)) for v in data.values()):
            data = {"model": data}
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise CheckpointError(f"{path}: expected a state dict, or a dict with a 'model' state dict.")
    data["model"] = _to_tensors(data["model"], path)
    return data


def _looks_like_caffe2(weights: Mapping[str, Any]) -> bool:
    names = [k for k in weights if isinstance(k, str)]
    return bool(names) and all("." not in k for k in names) and any(k.endswith(("_w", "_b")) for k in names)


def _to_tensors(state: Mapping[str, Any], source: str) -> Dict[str, torch.Tensor]:
    out = {}
    for k, v in state.items():
        if isinstance(v, torch.Tensor):
            out[k] = v
        elif isinstance(v, (np.ndarray, np.generic, int, float)):
            out[k] = torch.from_numpy(np.array(v))  # a writable copy (pickled arrays may be read-only)
        else:
            raise CheckpointError(f"{source}: entry {k!r} of the model weights is a {type(v).__name__}, not an array.")
    return out

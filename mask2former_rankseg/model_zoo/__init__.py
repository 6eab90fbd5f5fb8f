"""detectron2's ``model_zoo`` API for RankSeg's released checkpoints (see ``MODEL_ZOO.md``).

    from mask2former_rankseg import model_zoo
    model_zoo.list_models()                                   # every name
    cfg_file = model_zoo.get_config_file("ade20k/semantic/maskformer2_swin_base_IN21k_384_bs16_160k_res640-rankseg")
    model = model_zoo.get("ade20k/semantic/maskformer2_swin_base_IN21k_384_bs16_160k_res640-rankseg", trained=True)

``MODEL.WEIGHTS: zoo://<name>`` loads the same checkpoint from a config or the command line. Files are downloaded
once into iopath's cache (``$FVCORE_CACHE`` or ``~/.torch/iopath_cache``), with a progress bar and an md5 check
where the file name gives one; offline, the error names the file to download and where to put it.
"""

from __future__ import annotations

from pathlib import Path
from typing import List

from torch import nn

from ..config import ConfigError, find_shipped_config, get_cfg
from ..engine import Checkpointer, resolve_device
from ..engine.checkpoint.zoo import ZOO, ZOO_PREFIX, ZooEntry, zoo_entry
from ..modeling import build_model

__all__ = ["ZOO", "ZooEntry", "get", "get_checkpoint_url", "get_config", "get_config_file", "list_models"]


def list_models() -> List[str]:
    """Every model-zoo name (``<dataset>/<task>/<config stem>``; ``imagenet/<backbone>`` for the backbones)."""
    return sorted(ZOO)


def _trained_model(name: str) -> ZooEntry:
    entry = zoo_entry(name)
    if entry.config is None:
        raise ConfigError(f"{name!r} is an ImageNet backbone, not a segmentation model: put {ZOO_PREFIX}{entry.name} "
                          "(or its URL) in MODEL.WEIGHTS of a config that starts from it.")
    return entry


def get_config_file(name: str) -> Path:
    """The shipped config file of model-zoo entry ``name``."""
    path = find_shipped_config(_trained_model(name).config)
    if path is None:  # the catalog names only shipped configs (tests/engine/test_model_zoo.py checks it)
        raise ConfigError(f"The config of {name!r} is missing from this installation.")
    return path


def get_checkpoint_url(name: str) -> str:
    """The URL of ``name``'s checkpoint."""
    return zoo_entry(name).url


def get_config(name: str, trained: bool = False):
    """The config of ``name`` (a fresh, unfrozen ``CfgNode``); ``trained``: with ``MODEL.WEIGHTS`` set to its
    checkpoint (``zoo://<name>``)."""
    cfg = get_cfg()
    cfg.merge_from_file(str(get_config_file(name)))
    if trained:
        cfg.MODEL.WEIGHTS = ZOO_PREFIX + _trained_model(name).name
    return cfg


def get(name: str, trained: bool = False, device: str = "") -> nn.Module:
    """The model of ``name`` in eval mode on ``device`` (default ``MODEL.DEVICE``; the CPU without CUDA), with its
    released weights when ``trained`` (downloaded once), else as its config initialises it."""
    cfg = get_config(name, trained=trained)
    if device:
        cfg.MODEL.DEVICE = device
    model = build_model(cfg)
    if trained:
        Checkpointer(model).load(cfg.MODEL.WEIGHTS, checkpointables=[])
    return model.eval().to(resolve_device(cfg.MODEL.DEVICE))

"""Shared pytest setup: deterministic seeds, the package logger restored, and fixtures over ``helpers.py`` (the
tiny model, the repository's scripts as modules)."""

import logging
import random

import numpy as np
import pytest
import torch
from helpers import IMAGE_SIZE, TINY_LABELS, TINY_MODEL, load_script


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture
def restore_package_logger():
    """default_setup configures the package logger (handlers, no propagation); undo it after the test."""
    log = logging.getLogger("mask2former_rankseg")
    saved = (list(log.handlers), log.propagate, log.level)
    yield
    for h in log.handlers:
        if h not in saved[0]:
            h.close()
    log.handlers[:], log.propagate, log.level = saved


@pytest.fixture(scope="module")
def train_net():
    """The repository's ``train_net.py``, loaded as a module (``train_net.main(args)`` runs a whole job)."""
    return load_script("train_net.py")


@pytest.fixture
def tiny_model_opts():
    """``KEY VALUE`` overrides for a tiny, randomly initialised Mask2Former (+ RankSeg) from configs/synthetic: the
    tiny model with 12 categories (TOPK 5), tested at 64 px."""
    return [*TINY_MODEL, *TINY_LABELS, "INPUT.MIN_SIZE_TEST", str(IMAGE_SIZE)]


@pytest.fixture
def tiny_video_model_opts():
    """``KEY VALUE`` overrides for a tiny, randomly initialised VideoMaskFormer (+ RankSeg) from any video config
    (ResNet or Swin): the tiny model with the config's label set."""
    return list(TINY_MODEL)


@pytest.fixture
def prepare_script():
    """Load ``datasets/<name>.py`` (a preparation script) as a module: ``prepare_script("prepare_x").main([...])``."""
    return lambda name: load_script(f"datasets/{name}.py")

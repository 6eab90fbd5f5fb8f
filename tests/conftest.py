"""Shared pytest setup: deterministic seeds and a small thread count for the 2-core CI machine."""

import importlib.util
import logging
import random
from pathlib import Path

import numpy as np
import pytest
import torch


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
    spec = importlib.util.spec_from_file_location("train_net", Path(__file__).resolve().parents[1] / "train_net.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TINY_MODEL_OPTS = [
    "MODEL.DEVICE", "cpu",
    "MODEL.SEM_SEG_HEAD.NUM_CLASSES", 12, "MODEL.RANKSEG.TOPK", 5, "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", 6,
    "MODEL.RESNETS.STEM_OUT_CHANNELS", 16, "MODEL.RESNETS.RES2_OUT_CHANNELS", 16,
    "MODEL.SEM_SEG_HEAD.CONVS_DIM", 32, "MODEL.SEM_SEG_HEAD.MASK_DIM", 32,
    "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS", 1,
    "MODEL.MASK_FORMER.HIDDEN_DIM", 32, "MODEL.MASK_FORMER.DIM_FEEDFORWARD", 64, "MODEL.RANKSEG.HIDDEN_DIM", 32,
    "INPUT.MIN_SIZE_TEST", 64,
]
"""Overrides that shrink a configs/synthetic model to a randomly initialised toy (under 1M parameters, 12 classes,
64 px test size): for tests that need a whole model but not a trained one."""


@pytest.fixture
def tiny_model_opts():
    """``KEY VALUE`` overrides for a tiny Mask2Former (+ RankSeg) built from configs/synthetic."""
    return [str(v) for v in TINY_MODEL_OPTS]


TINY_VIDEO_MODEL_OPTS = [
    "MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "",
    "MODEL.RESNETS.DEPTH", 18, "MODEL.RESNETS.STEM_OUT_CHANNELS", 16, "MODEL.RESNETS.RES2_OUT_CHANNELS", 16,
    "MODEL.SWIN.EMBED_DIM", 16, "MODEL.SWIN.DEPTHS", "[1, 1, 1, 1]", "MODEL.SWIN.NUM_HEADS", "[1, 1, 2, 2]",
    "MODEL.SWIN.WINDOW_SIZE", 4,
    "MODEL.SEM_SEG_HEAD.CONVS_DIM", 32, "MODEL.SEM_SEG_HEAD.MASK_DIM", 32,
    "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS", 1,
    "MODEL.MASK_FORMER.HIDDEN_DIM", 32, "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", 6, "MODEL.MASK_FORMER.NHEADS", 2,
    "MODEL.MASK_FORMER.DIM_FEEDFORWARD", 64, "MODEL.MASK_FORMER.DEC_LAYERS", 4,
    "MODEL.MASK_FORMER.TRAIN_NUM_POINTS", 64, "MODEL.RANKSEG.HIDDEN_DIM", 64,
]
"""Overrides that shrink any configs/youtubevis_2019, configs/vspw or configs/synthetic video config (ResNet or
Swin) to a randomly initialised toy VideoMaskFormer: for tests that need a whole video model, never for parameter
counts."""


@pytest.fixture
def tiny_video_model_opts():
    """``KEY VALUE`` overrides for a tiny VideoMaskFormer (+ RankSeg) from any video config."""
    return [str(v) for v in TINY_VIDEO_MODEL_OPTS]
@pytest.fixture
def prepare_script():
    """Load ``datasets/<name>.py`` (a preparation script) as a module: ``prepare_script("prepare_x").main([...])``."""
    import importlib.util
    from pathlib import Path

    def load(name: str):
        path = Path(__file__).resolve().parents[1] / "datasets" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load

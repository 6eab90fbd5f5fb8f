"""tools/convert-torchvision-to-d2.py: a randomly initialised torchvision ResNet, converted and loaded through
MODEL.WEIGHTS-style loading (suffix matching into ``backbone.``), gives torchvision's features."""

from __future__ import annotations

import importlib.util
import logging
import pickle

import pytest
import torch
import torchvision
from helpers import REPO, WithBackbone
from torch import nn

from mask2former_rankseg.config import get_cfg
from mask2former_rankseg.engine import Checkpointer
from mask2former_rankseg.engine.checkpoint import load_pkl
from mask2former_rankseg.layers import ShapeSpec
from mask2former_rankseg.modeling.backbone import build_resnet_backbone


def _tool():
    path = REPO / "tools" / "convert-torchvision-to-d2.py"
    spec = importlib.util.spec_from_file_location("convert_torchvision", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("depth", [18, 50])
def test_round_trip_gives_torchvision_features(tmp_path, depth, caplog):
    torch.manual_seed(depth)
    tv = getattr(torchvision.models, f"resnet{depth}")(weights=None).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics and affine parameters
        for m in tv.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    source, output = tmp_path / f"resnet{depth}.pth", tmp_path / f"R-{depth}.pkl"
    torch.save(tv.state_dict(), source)
    assert _tool().main([str(source), str(output)]) == 0

    data = load_pkl(output)
    assert data["__author__"] == "torchvision" and data["matching_heuristics"] is True
    assert "stem.conv1.weight" in data["model"] and "res5.1.conv1.norm.running_var" in data["model"]
    assert not any(k.startswith("fc") or k.endswith("num_batches_tracked") for k in data["model"])

    cfg = get_cfg()
    cfg.MODEL.RESNETS.DEPTH = depth
    cfg.MODEL.RESNETS.STRIDE_IN_1X1 = False
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    if depth < 50:
        cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    model = WithBackbone(build_resnet_backbone(cfg, ShapeSpec(channels=3))).eval()
    with caplog.at_level(logging.INFO):
        incompatible = Checkpointer(model).load(str(output))["incompatible"]
    assert sorted(incompatible.missing) == ["sem_seg_head.bias", "sem_seg_head.weight"]
    assert not incompatible.unexpected and not incompatible.shape_mismatch
    assert f"prefixes added: 'backbone.': {len(data['model'])}" in caplog.text

    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        ours = model.backbone(x)
        t = tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))
        for i, name in enumerate(["res2", "res3", "res4", "res5"], start=1):
            t = getattr(tv, f"layer{i}")(t)
            # float32 rounding of FrozenBN's folded scale vs BatchNorm grows with depth: relative to the magnitude
            error = ((ours[name] - t).abs().max() / t.abs().max()).item()
            assert ours[name].shape == t.shape and error < 1e-5, (name, error)


def test_bad_input_is_a_clear_error_and_writes_nothing(tmp_path, caplog):
    tool = _tool()
    output = tmp_path / "out.pkl"
    not_resnet = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(2)}, not_resnet)
    with caplog.at_level(logging.ERROR):
        assert tool.main([str(not_resnet), str(output)]) == 1
    assert "other.pth: no 'layer1.*' keys" in caplog.text
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    assert tool.main([str(garbage), str(output)]) == 1
    assert "garbage.pth: not a readable PyTorch weight file" in caplog.text
    assert tool.main([str(tmp_path / "missing.pth"), str(output)]) == 1
    assert "missing.pth: no such file" in caplog.text
    assert not output.exists() and not list(tmp_path.glob(".out.pkl*"))  # nothing half-written


def test_output_is_plain_data(tmp_path):
    """The converted file unpickles with the restricted unpickler: numpy arrays and plain containers only."""
    tv = torchvision.models.resnet18(weights=None)
    torch.save({"state_dict": tv.state_dict()}, tmp_path / "wrapped.pth")  # a wrapped state dict is unwrapped
    assert _tool().main([str(tmp_path / "wrapped.pth"), str(tmp_path / "R-18.pkl")]) == 0
    with open(tmp_path / "R-18.pkl", "rb") as f:
        raw = pickle.load(f)
    assert set(raw) == {"model", "__author__", "matching_heuristics"}
    assert len(raw["model"]) == len([k for k in tv.state_dict() if not k.startswith("fc.")
                                     and not k.endswith("num_batches_tracked")])

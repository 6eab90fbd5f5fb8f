"""tools/convert-mmseg-resnet-to-d2.py: random weights under mmseg's ResNetV1c names, converted and loaded into
build_resnet_deeplab_backbone (mmseg's ResNetV1c-D8 keys), give the features of a reference forward written here
with plain torch ops from mmseg's definition (``ResNetV1c``, ``ResLayer`` with ``contract_dilation``, ``style
='pytorch'``). A name mapped to the wrong tensor fails the load (shape) or the comparison (values)."""

from __future__ import annotations

import logging
from typing import Dict, List

import pytest
import torch
from helpers import WithBackbone, load_script
from torch import nn
from torch.nn import functional as F

from mask2former_rankseg.config import get_cfg
from mask2former_rankseg.engine import Checkpointer
from mask2former_rankseg.engine.checkpoint import load_pkl
from mask2former_rankseg.layers import ShapeSpec
from mask2former_rankseg.modeling.backbone import build_resnet_deeplab_backbone
from mask2former_rankseg.utils.convert import ConversionError, mmseg_resnet_name

BLOCKS = {18: [2, 2, 2, 2], 50: [3, 4, 6, 3]}
STRIDES, DILATIONS = (1, 2, 1, 1), (1, 1, 2, 4)  # mmseg's deeplabv3_r50-d8 backbone
STEM_CHANNELS = 64
State = Dict[str, torch.Tensor]


def _mmseg_v1c_state(depth: int, seed: int) -> State:
    """Random weights under the names mmseg's ResNetV1c(depth, strides, dilations) state dict has: the deep stem
    ``stem.{0,1,3,4,6,7}``, ``layer{i}.{j}.conv{k}/bn{k}``, ``downsample.{0,1}``, BN counters and a classifier."""
    g = torch.Generator().manual_seed(seed)
    state: State = {}

    def conv(name: str, c_out: int, c_in: int, k: int) -> None:
        state[f"{name}.weight"] = torch.randn(c_out, c_in, k, k, generator=g) * (2.0 / (c_in * k * k)) ** 0.5

    def bn(name: str, c: int) -> None:
        state[f"{name}.weight"] = torch.rand(c, generator=g) + 0.5
        state[f"{name}.bias"] = torch.rand(c, generator=g) * 0.4 - 0.2
        state[f"{name}.running_mean"] = torch.rand(c, generator=g) * 0.4 - 0.2
        state[f"{name}.running_var"] = torch.rand(c, generator=g) + 0.5
        state[f"{name}.num_batches_tracked"] = torch.tensor(100)

    half = STEM_CHANNELS // 2
    conv("stem.0", half, 3, 3), bn("stem.1", half)
    conv("stem.3", half, half, 3), bn("stem.4", half)
    conv("stem.6", STEM_CHANNELS, half, 3), bn("stem.7", STEM_CHANNELS)
    bottleneck = depth >= 50
    inplanes = STEM_CHANNELS
    for i, (num_blocks, stride) in enumerate(zip(BLOCKS[depth], STRIDES)):
        planes = 64 * 2 ** i
        c_out = planes * (4 if bottleneck else 1)
        for j in range(num_blocks):
            p, c_in = f"layer{i + 1}.{j}", inplanes if j == 0 else c_out
            if bottleneck:
                conv(f"{p}.conv1", planes, c_in, 1), bn(f"{p}.bn1", planes)
                conv(f"{p}.conv2", planes, planes, 3), bn(f"{p}.bn2", planes)
                conv(f"{p}.conv3", c_out, planes, 1), bn(f"{p}.bn3", c_out)
            else:
                conv(f"{p}.conv1", planes, c_in, 3), bn(f"{p}.bn1", planes)
                conv(f"{p}.conv2", planes, planes, 3), bn(f"{p}.bn2", planes)
            if j == 0 and (stride != 1 or inplanes != c_out):
                conv(f"{p}.downsample.0", c_out, inplanes, 1), bn(f"{p}.downsample.1", c_out)
        inplanes = c_out
    state["fc.weight"] = torch.randn(10, inplanes, generator=g)
    state["fc.bias"] = torch.randn(10, generator=g)
    return state


def _reference_forward(s: State, x: torch.Tensor, depth: int) -> List[torch.Tensor]:
    """mmseg's ResNetV1c-D8 forward in eval mode: the four stage outputs."""

    def bn(t: torch.Tensor, name: str) -> torch.Tensor:
        return F.batch_norm(t, s[f"{name}.running_mean"], s[f"{name}.running_var"], s[f"{name}.weight"],
                            s[f"{name}.bias"], training=False, eps=1e-5)

    def conv(t: torch.Tensor, name: str, stride: int = 1, dilation: int = 1) -> torch.Tensor:
        w = s[f"{name}.weight"]
        padding = dilation if w.shape[-1] == 3 else 0
        return F.conv2d(t, w, stride=stride, padding=padding, dilation=dilation)

    x = F.relu(bn(conv(x, "stem.0", stride=2), "stem.1"))
    x = F.relu(bn(conv(x, "stem.3"), "stem.4"))
    x = F.relu(bn(conv(x, "stem.6"), "stem.7"))
    x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
    outs = []
    for i, (num_blocks, stride, dilation) in enumerate(zip(BLOCKS[depth], STRIDES, DILATIONS)):
        for j in range(num_blocks):
            p = f"layer{i + 1}.{j}"
            st = stride if j == 0 else 1
            d = dilation // 2 if j == 0 and dilation > 1 else dilation  # contract_dilation=True, no multi-grid
            if depth >= 50:  # Bottleneck, style='pytorch': the stride in the 3x3 conv
                out = F.relu(bn(conv(x, f"{p}.conv1"), f"{p}.bn1"))
                out = F.relu(bn(conv(out, f"{p}.conv2", stride=st, dilation=d), f"{p}.bn2"))
                out = bn(conv(out, f"{p}.conv3"), f"{p}.bn3")
            else:  # BasicBlock: conv1 dilated, conv2 not
                out = F.relu(bn(conv(x, f"{p}.conv1", stride=st, dilation=d), f"{p}.bn1"))
                out = bn(conv(out, f"{p}.conv2"), f"{p}.bn2")
            identity = x
            if f"{p}.downsample.0.weight" in s:
                identity = bn(conv(x, f"{p}.downsample.0", stride=st), f"{p}.downsample.1")
            x = F.relu(out + identity)
        outs.append(x)
    return outs


def _v1c_d8_backbone(depth: int) -> nn.Module:
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    r = cfg.MODEL.RESNETS
    r.DEPTH, r.NORM, r.OUT_FEATURES = depth, "FrozenBN", ["res2", "res3", "res4", "res5"]
    r.STEM_TYPE, r.STEM_OUT_CHANNELS, r.STRIDE_IN_1X1 = "deeplab", STEM_CHANNELS, False
    r.RES4_DILATION, r.RES5_DILATION, r.CONTRACT_DILATION = 2, 4, True
    r.RES5_MULTI_GRID = [1] * BLOCKS[depth][3]
    return build_resnet_deeplab_backbone(cfg, ShapeSpec(channels=3)).eval()


@pytest.mark.slow
@pytest.mark.parametrize("depth", [18, 50])
def test_round_trip_gives_mmsegs_features(tmp_path, depth, caplog):
    state = _mmseg_v1c_state(depth, seed=depth)
    source, output = tmp_path / f"resnet{depth}_v1c.pth", tmp_path / f"R-{depth}-V1c.pkl"
    torch.save({"state_dict": state, "meta": {}}, source)
    assert load_script("tools/convert-mmseg-resnet-to-d2.py").main([str(source), str(output)]) == 0

    data = load_pkl(output)
    assert data["__author__"] == "open-mmlab" and data["matching_heuristics"] is True
    weights = {k: torch.as_tensor(v) for k, v in data["model"].items()}
    kept = [k for k in state if not k.startswith("fc.") and not k.endswith("num_batches_tracked")]
    assert len(weights) == len(kept)
    torch.testing.assert_close(weights["stem.conv2.weight"], state["stem.3.weight"], rtol=0, atol=0)
    torch.testing.assert_close(weights["stem.conv3.norm.running_var"], state["stem.7.running_var"], rtol=0, atol=0)

    backbone = _v1c_d8_backbone(depth)
    backbone.load_state_dict(weights, strict=True)  # every name exists and every shape fits
    x = torch.randn(2, 3, 64, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = backbone(x)
        reference = _reference_forward(state, x, depth)
    for name, t in zip(["res2", "res3", "res4", "res5"], reference):
        # FrozenBN folds the statistics into a scale and shift: float32 rounding relative to the magnitude
        error = ((ours[name] - t).abs().max() / t.abs().max()).item()
        assert ours[name].shape == t.shape and error < 1e-5, (name, error)
    assert reference[3].shape[-2:] == (8, 4)  # output stride 8

    # MODEL.WEIGHTS-style loading matches the names into backbone.*
    model = WithBackbone(_v1c_d8_backbone(depth))
    with caplog.at_level(logging.INFO):
        incompatible = Checkpointer(model).load(str(output))["incompatible"]
    assert sorted(incompatible.missing) == ["sem_seg_head.bias", "sem_seg_head.weight"]
    assert not incompatible.unexpected and not incompatible.shape_mismatch
    with torch.no_grad():
        torch.testing.assert_close(model.backbone(x)["res5"], ours["res5"], rtol=0, atol=0)


def test_names():
    assert mmseg_resnet_name("stem.0.weight") == "stem.conv1.weight"
    assert mmseg_resnet_name("stem.4.running_mean") == "stem.conv2.norm.running_mean"
    assert mmseg_resnet_name("stem.7.bias") == "stem.conv3.norm.bias"
    assert mmseg_resnet_name("layer3.5.bn2.weight") == "res4.5.conv2.norm.weight"
    assert mmseg_resnet_name("layer1.0.downsample.1.running_var") == "res2.0.shortcut.norm.running_var"
    assert mmseg_resnet_name("bn1.weight") == "stem.conv1.norm.weight"  # ResNetV1b's 7x7 stem
    assert mmseg_resnet_name("stem.1.num_batches_tracked") is None and mmseg_resnet_name("fc.weight") is None
    with pytest.raises(ConversionError, match="stem.2.weight: not a tensor of mmseg's deep stem"):
        mmseg_resnet_name("stem.2.weight")


def test_whole_model_checkpoint_keeps_the_backbone(tmp_path):
    state = {f"backbone.{k}": v for k, v in _mmseg_v1c_state(18, seed=1).items()}
    state["decode_head.conv_seg.weight"] = torch.zeros(2, 2, 1, 1)
    torch.save({"state_dict": state}, tmp_path / "model.pth")
    assert load_script("tools/convert-mmseg-resnet-to-d2.py").main(
        [str(tmp_path / "model.pth"), str(tmp_path / "out.pkl")]) == 0
    names = set(load_pkl(tmp_path / "out.pkl")["model"])
    assert names == set(_v1c_d8_backbone(18).state_dict())


def test_bad_input_is_a_clear_error_and_writes_nothing(tmp_path, caplog):
    tool = load_script("tools/convert-mmseg-resnet-to-d2.py")
    output = tmp_path / "out.pkl"
    torch.save({"encoder.weight": torch.zeros(2)}, tmp_path / "other.pth")
    with caplog.at_level(logging.ERROR):
        assert tool.main([str(tmp_path / "other.pth"), str(output)]) == 1
    assert "other.pth: no 'layer1.*' keys" in caplog.text
    odd = _mmseg_v1c_state(18, seed=2)
    odd["stem.9.weight"] = torch.zeros(1)
    torch.save(odd, tmp_path / "odd.pth")
    assert tool.main([str(tmp_path / "odd.pth"), str(output)]) == 1
    assert "odd.pth: stem.9.weight: not a tensor of mmseg's deep stem" in caplog.text
    assert not output.exists() and not list(tmp_path.glob(".out.pkl*"))

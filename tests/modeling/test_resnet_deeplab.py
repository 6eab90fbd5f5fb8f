"""build_resnet_deeplab_backbone: the deep stem, dilated res4/res5 (output stride 8 and 16), multi-grid, mmseg's
contract_dilation, detectron2's R-103 names, config errors, and ResNet-101-V1c's parameter count."""

from __future__ import annotations

from typing import List

import pytest
import torch

from mask2former_rankseg.config import get_cfg
from mask2former_rankseg.layers import FrozenBatchNorm2d, ShapeSpec
from mask2former_rankseg.modeling.backbone import (
    BasicBlock,
    DeepLabStem,
    build_resnet_backbone,
    build_resnet_deeplab_backbone,
    deeplab_block_dilations,
)
from mask2former_rankseg.modeling.registry import BACKBONE_REGISTRY

FEATURES = ["res2", "res3", "res4", "res5"]


def _cfg(depth: int = 50, **overrides):
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.NAME = "build_resnet_deeplab_backbone"
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    r = cfg.MODEL.RESNETS
    r.DEPTH = depth
    r.NORM = "BN"
    r.OUT_FEATURES = FEATURES
    r.STRIDE_IN_1X1 = False
    for key, value in overrides.items():
        setattr(r, key, value)
    return cfg


def _build(depth: int = 50, **overrides):
    return build_resnet_deeplab_backbone(_cfg(depth, **overrides), ShapeSpec(channels=3))


V1C_D8 = {"STEM_OUT_CHANNELS": 64, "RES4_DILATION": 2, "RES5_DILATION": 4, "CONTRACT_DILATION": True}
"""mmseg's ResNetV1c-D8 (RankSeg's per-pixel configs) with RES5_MULTI_GRID all ones."""


def test_registered_under_detectron2s_name():
    assert BACKBONE_REGISTRY.get("build_resnet_deeplab_backbone") is build_resnet_deeplab_backbone


@pytest.mark.parametrize("depth,channels", [(18, [64, 128, 256, 512]), (50, [256, 512, 1024, 2048])])
@pytest.mark.parametrize("res4,res5,strides", [(2, 4, [4, 8, 8, 8]), (1, 2, [4, 8, 16, 16]), (1, 1, [4, 8, 16, 32])])
def test_output_strides(depth, channels, res4, res5, strides):
    multi_grid = [1, 2] if depth == 18 else [1, 2, 4]
    model = _build(depth, RES4_DILATION=res4, RES5_DILATION=res5, RES5_MULTI_GRID=multi_grid).eval()
    assert isinstance(model.stem, DeepLabStem)  # STEM_TYPE's default is "deeplab"
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 32))
    shapes = model.output_shape()
    for name, c, stride in zip(FEATURES, channels, strides):
        assert (shapes[name].channels, shapes[name].stride) == (c, stride)
        assert out[name].shape == (1, c, 64 // stride, 32 // stride)


def _dilations(stage) -> List[int]:
    """The dilation of each block's 3x3 conv (the bottleneck's conv2, the basic block's conv1)."""
    convs = [b.conv1 if isinstance(b, BasicBlock) else b.conv2 for b in stage]
    assert all(c.padding == c.dilation for c in convs)  # resolution kept
    return [c.dilation[0] for c in convs]


def test_detectron2_r103_os16_multi_grid():
    """detectron2's deeplab_v3_R_103_os16_mg124 (RES5_DILATION 2 from Base-RCNN-DilatedC5): res5 2 * [1, 2, 4]."""
    model = _build(50, STEM_OUT_CHANNELS=128, RES5_DILATION=2, RES5_MULTI_GRID=[1, 2, 4])
    assert _dilations(model.res4) == [1] * 6 and model.res4[0].conv2.stride == (2, 2)
    assert _dilations(model.res5) == [2, 4, 8] and model.res5[0].conv2.stride == (1, 1)
    assert model.res5[0].shortcut.stride == (1, 1)


def test_os8_multi_grid_multiplies_res5():
    model = _build(50, RES4_DILATION=2, RES5_DILATION=4, RES5_MULTI_GRID=[1, 2, 4])
    assert [_dilations(getattr(model, n)) for n in FEATURES] == [
        [1, 1, 1], [1, 1, 1, 1], [2, 2, 2, 2, 2, 2], [4, 8, 16]]
    assert [getattr(model, n)[0].conv2.stride[0] for n in FEATURES] == [1, 2, 1, 1]


def test_contract_dilation_is_mmsegs():
    """mmseg's ResLayer with contract_dilation and no multi-grid: the first block of a stage with dilation d > 1
    has d // 2 (res4 of R-50: 1, then 2 x 5; res5: 2, 4, 4); undilated stages are unchanged."""
    model = _build(50, RES5_MULTI_GRID=[1, 1, 1], **V1C_D8)
    assert [_dilations(getattr(model, n)) for n in FEATURES] == [
        [1, 1, 1], [1, 1, 1, 1], [1, 2, 2, 2, 2, 2], [2, 4, 4]]
    assert deeplab_block_dilations([3, 4, 23, 3], res4_dilation=2, res5_dilation=4, res5_multi_grid=[1, 1, 1],
                                   contract_dilation=True)[2:] == [[1] + [2] * 22, [2, 4, 4]]
    # output stride 16 (res5 only dilated): res5 2 -> first block 1
    assert deeplab_block_dilations([3, 4, 6, 3], res5_dilation=2, contract_dilation=True) == [
        [1, 1, 1], [1, 1, 1, 1], [1] * 6, [1, 2, 2]]


def test_dilated_resnet18_deep_stem():
    """BasicBlock dilates its first conv only (mmseg's BasicBlock); the second stays 3x3 with dilation 1."""
    model = _build(18, RES5_MULTI_GRID=[1, 1], **V1C_D8)
    assert _dilations(model.res4) == [1, 2] and _dilations(model.res5) == [2, 4]
    assert [b.conv2.dilation for b in model.res5] == [(1, 1), (1, 1)]
    assert model.res4[0].shortcut is not None and model.res4[0].shortcut.stride == (1, 1)
    out = model(torch.randn(2, 3, 32, 32))
    assert out["res5"].shape == (2, 512, 4, 4)
    out["res5"].mean().backward()
    assert model.stem.conv3.weight.grad is not None


def test_r103_stem_names_and_shapes():
    """detectron2's DeepLabStem with STEM_OUT_CHANNELS 128, the names and shapes of R-103.pkl's stem."""
    state = _build(101, STEM_OUT_CHANNELS=128, NORM="FrozenBN").state_dict()
    expected = {"stem.conv1.weight": (64, 3, 3, 3), "stem.conv2.weight": (64, 64, 3, 3),
                "stem.conv3.weight": (128, 64, 3, 3), "res2.0.conv1.weight": (64, 128, 1, 1),
                "res2.0.shortcut.weight": (256, 128, 1, 1)}
    for conv, channels in [("stem.conv1", 64), ("stem.conv2", 64), ("stem.conv3", 128)]:
        for buffer in ["weight", "bias", "running_mean", "running_var"]:
            expected[f"{conv}.norm.{buffer}"] = (channels,)
    assert {k: tuple(v.shape) for k, v in state.items() if k.startswith("stem.")} == {
        k: v for k, v in expected.items() if k.startswith("stem.")}
    for name, shape in expected.items():
        assert tuple(state[name].shape) == shape, name
    assert len([k for k in state if k.startswith("res4.")]) == 23 * 15 + 5  # 3 convs + 3 norms (4 buffers) each


def test_basic_stem_without_dilation_is_build_resnet_backbone():
    """Shared machinery: STEM_TYPE "basic", no dilation, no multi-grid builds detectron2's ResNet exactly."""
    torch.manual_seed(0)
    ours = _build(50, STEM_TYPE="basic", RES5_MULTI_GRID=[1, 1, 1]).eval()
    torch.manual_seed(0)
    plain = build_resnet_backbone(_cfg(50), ShapeSpec(channels=3)).eval()
    assert ours.state_dict().keys() == plain.state_dict().keys()
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in ours.state_dict().items())
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x)["res5"], plain(x)["res5"], rtol=0, atol=0)


def test_freeze_at_one_freezes_the_deep_stem():
    cfg = _cfg(18, RES5_MULTI_GRID=[1, 1])
    cfg.MODEL.BACKBONE.FREEZE_AT = 1
    model = build_resnet_deeplab_backbone(cfg, ShapeSpec(channels=3))
    assert all(not p.requires_grad for p in model.stem.parameters())
    assert all(isinstance(getattr(model.stem, c).norm, FrozenBatchNorm2d) for c in ("conv1", "conv2", "conv3"))
    assert all(p.requires_grad for p in model.res2.parameters())


def test_res4_only_ignores_res5_multi_grid():
    model = _build(18, OUT_FEATURES=["res4"], RES4_DILATION=2, RES5_DILATION=4)  # default multi-grid has 3 values
    assert model.stage_names == ["res2", "res3", "res4"] and model.output_shape()["res4"].stride == 8


@pytest.mark.parametrize("overrides,message", [
    ({"RES4_DILATION": 3}, "MODEL.RESNETS.RES4_DILATION=3 must be 1 or 2"),
    ({"RES5_DILATION": 3}, "MODEL.RESNETS.RES5_DILATION=3 must be 1, 2 or 4"),
    ({"RES4_DILATION": 2, "RES5_DILATION": 1}, "MODEL.RESNETS.RES4_DILATION=2 needs MODEL.RESNETS.RES5_DILATION=4"),
    ({"STEM_TYPE": "foo"}, "MODEL.RESNETS.STEM_TYPE='foo' is not one of \\['basic', 'deeplab'\\]"),
    ({"STEM_OUT_CHANNELS": 63}, "MODEL.RESNETS.STEM_OUT_CHANNELS=63 must be even"),
    ({"RES5_MULTI_GRID": [1, 2]}, "MODEL.RESNETS.RES5_MULTI_GRID=\\[1, 2\\] needs one value per res5 block \\(3\\)"),
    ({"RES5_MULTI_GRID": [1, 0, 1]}, "MODEL.RESNETS.RES5_MULTI_GRID=\\[1, 0, 1\\] must hold positive integers"),
    ({"CONTRACT_DILATION": True}, "MODEL.RESNETS.CONTRACT_DILATION=True needs MODEL.RESNETS.RES5_MULTI_GRID all ones"),
    ({"DEPTH": 26}, "MODEL.RESNETS.DEPTH=26 is not one of"),
    ({"DEFORM_ON_PER_STAGE": [False, False, False, True]}, "MODEL.RESNETS.DEFORM_ON_PER_STAGE"),
])
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(ValueError, match=message):
        _build(50, **overrides)


def _conv(c_in: int, c_out: int, k: int) -> int:
    return c_in * c_out * k * k


def _bn(c: int) -> int:
    return 2 * c  # weight and bias (running statistics are buffers)


def test_resnet101_v1c_parameter_count():
    """ResNet-101-V1c (mmseg's ResNetV1c, depth 101, stem_channels 64), counted by hand; dilation adds nothing."""
    stem = _conv(3, 32, 3) + _bn(32) + _conv(32, 32, 3) + _bn(32) + _conv(32, 64, 3) + _bn(64)
    assert stem == 28_768
    total, c_in = stem, 64
    for mid, n in [(64, 3), (128, 4), (256, 23), (512, 3)]:
        c_out = 4 * mid
        shortcut = _conv(c_in, c_out, 1) + _bn(c_out)
        block = _conv(c_out, mid, 1) + _bn(mid) + _conv(mid, mid, 3) + _bn(mid) + _conv(mid, c_out, 1) + _bn(c_out)
        first = block - _conv(c_out, mid, 1) + _conv(c_in, mid, 1) + shortcut
        total += first + (n - 1) * block
        c_in = c_out
    # = torchvision's ResNet-101 without fc (42,500,160) - its 7x7 stem (9,408 + 128) + the deep stem (28,768)
    assert total == 42_519_392 == 42_500_160 - 9_536 + 28_768
    model = _build(101, RES5_MULTI_GRID=[1, 1, 1], **V1C_D8)
    assert sum(p.numel() for p in model.parameters()) == total

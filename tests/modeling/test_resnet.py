"""ResNet backbone: shapes, strides, names, freezing, dilation, parity with torchvision's ResNet."""


import pytest
import torch
import torchvision

from mask2former_rankseg.config import get_cfg
from mask2former_rankseg.layers import FrozenBatchNorm2d, ShapeSpec
from mask2former_rankseg.modeling.backbone import build_resnet_backbone
from mask2former_rankseg.utils.convert import torchvision_resnet_name


def _cfg(depth=50, **overrides):
    cfg = get_cfg()
    cfg.MODEL.RESNETS.DEPTH = depth
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.RESNETS.STRIDE_IN_1X1 = False
    for key, value in overrides.items():
        node, name = (cfg.MODEL.BACKBONE, key) if key == "FREEZE_AT" else (cfg.MODEL.RESNETS, key)
        setattr(node, name, value)
    return cfg


def _build(depth=50, **overrides):
    return build_resnet_backbone(_cfg(depth, **overrides), ShapeSpec(channels=3))


@pytest.mark.parametrize("depth,channels", [(18, [64, 128, 256, 512]), (50, [256, 512, 1024, 2048])])
def test_shapes_and_strides(depth, channels):
    model = _build(depth, FREEZE_AT=0).eval()
    out = model(torch.randn(1, 3, 64, 64))
    for (name, spec), c, stride in zip(model.output_shape().items(), channels, [4, 8, 16, 32]):
        assert spec.channels == c and spec.stride == stride
        assert out[name].shape == (1, c, 64 // stride, 64 // stride)


def _torchvision_to_d2(state):
    """Backbone tensors of a torchvision state dict under detectron2's names (fc and counters dropped)."""
    return {torchvision_resnet_name(k): v for k, v in state.items() if torchvision_resnet_name(k) is not None}


@pytest.mark.parametrize("depth", [18, 50])
def test_parity_with_torchvision(depth):
    tv = getattr(torchvision.models, f"resnet{depth}")(weights=None).eval()
    ours = _build(depth, FREEZE_AT=0, NORM="BN").eval()
    tv_params = sum(p.numel() for n, p in tv.named_parameters() if not n.startswith("fc."))
    assert sum(p.numel() for p in ours.parameters()) == tv_params
    missing, unexpected = ours.load_state_dict(_torchvision_to_d2(tv.state_dict()), strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing)
    with torch.no_grad():
        for m in tv.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        ours.load_state_dict(_torchvision_to_d2(tv.state_dict()), strict=False)
        x = torch.randn(2, 3, 64, 64)
        t = tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))
        t = tv.layer4(tv.layer3(tv.layer2(tv.layer1(t))))
        torch.testing.assert_close(ours(x)["res5"], t, atol=1e-4, rtol=1e-4)


def test_r50_names():
    names = set(_build(50).state_dict())
    for name in ["stem.conv1.weight", "stem.conv1.norm.weight", "res2.0.conv1.weight", "res2.0.shortcut.weight",
                 "res5.2.conv3.norm.running_var", "res3.0.shortcut.norm.bias"]:
        assert name in names


def test_freeze_at_two():
    model = _build(50, FREEZE_AT=2, NORM="BN")
    for name, p in model.named_parameters():
        assert p.requires_grad == (not name.startswith(("stem.", "res2."))), name
    assert isinstance(model.stem.conv1.norm, FrozenBatchNorm2d)
    assert isinstance(model.res2[0].conv1.norm, FrozenBatchNorm2d)
    assert isinstance(model.res3[0].conv1.norm, torch.nn.BatchNorm2d)


def test_stride_in_1x1():
    a = _build(50, STRIDE_IN_1X1=True)
    b = _build(50, STRIDE_IN_1X1=False)
    assert a.res3[0].conv1.stride == (2, 2) and a.res3[0].conv2.stride == (1, 1)
    assert b.res3[0].conv1.stride == (1, 1) and b.res3[0].conv2.stride == (2, 2)


def test_res5_dilation():
    model = _build(50, RES5_DILATION=2).eval()
    assert model.output_shape()["res5"].stride == 16
    out = model(torch.randn(1, 3, 64, 64))
    assert out["res5"].shape[-2:] == out["res4"].shape[-2:]
    assert model.res5[0].conv2.dilation == (2, 2)
    with pytest.raises(ValueError, match="RES5_DILATION"):
        _build(18, RES5_DILATION=2)


def test_small_width_gn_and_training():
    model = _build(18, STEM_OUT_CHANNELS=32, RES2_OUT_CHANNELS=32, NORM="GN", FREEZE_AT=0)
    assert [s.channels for s in model.output_shape().values()] == [32, 64, 128, 256]
    out = model(torch.randn(2, 3, 32, 32))
    out["res5"].mean().backward()
    assert model.stem.conv1.weight.grad is not None


def test_deformable_is_refused():
    with pytest.raises(ValueError, match="DEFORM_ON_PER_STAGE"):
        _build(50, DEFORM_ON_PER_STAGE=[False, True, True, True])

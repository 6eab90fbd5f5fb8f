"""tools/convert-timm-swin-to-d2.py and tools/convert-pretrained-swin-model-to-d2.py: randomly initialised
source models, converted, read back with the restricted unpickler and loaded into D2SwinTransformer, give the
source's features; bad inputs give one clear error and no output file."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import pytest
import torch
from helpers import REPO
from torch.nn import functional as F

from mask2former_rankseg.engine.checkpoint import load_pkl
from mask2former_rankseg.modeling.backbone import D2SwinTransformer
from mask2former_rankseg.modeling.backbone.swin import shifted_window_mask

timm_swin = pytest.importorskip("timm.models.swin_transformer")

SMALL = dict(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8))


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name.replace("-", "_"), REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _randomize_norms(model: torch.nn.Module) -> None:
    """LayerNorms start at weight 1 / bias 0; make them non-trivial so that a swapped name would show."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)


STAGE_NORMS = {f"norm{i}.{p}" for i in range(4) for p in ("weight", "bias")}


def _load_backbone(model: D2SwinTransformer, weights: dict) -> set:
    """Load converted weights into the backbone, which must find all its keys but the per-stage norms (ImageNet
    files have none: Mask2Former trains them from their initialisation). Returns the converted keys it ignores."""
    own = model.state_dict()
    result = model.load_state_dict({k: v for k, v in weights.items() if k in own}, strict=False)
    assert set(result.missing_keys) == STAGE_NORMS
    return set(weights) - set(own)


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_timm_round_trip(tmp_path, fmt):
    """timm's stage outputs have no per-stage norm, while D2SwinTransformer's res{i} are ``norm{i}`` of its stage
    outputs, and ``norm{i}`` is not in ImageNet weights (Mask2Former trains it from its initialisation, weight 1
    and bias 0). So the honest check is the real use: a fresh model loaded with the converted weights gives
    ``layer_norm(timm stage i output)`` without affine, within 1e-5. The input size (256x384, window 4) keeps every
    stage divisible by the window and larger than it, where timm and upstream agree (for smaller maps timm
    shrinks the window; for non-divisible ones it pads after the cyclic shift instead of before it)."""
    torch.manual_seed(0)
    timm_model = timm_swin.SwinTransformer(img_size=(256, 384), window_size=4, num_classes=10, **SMALL).eval()
    _randomize_norms(timm_model)
    source = tmp_path / f"timm_swin.{fmt}"
    if fmt == "safetensors":
        safetensors_torch = pytest.importorskip("safetensors.torch")
        safetensors_torch.save_file(timm_model.state_dict(), str(source))
    else:
        torch.save(timm_model.state_dict(), source)
    output = tmp_path / "swin.pkl"
    assert _tool("convert-timm-swin-to-d2").main([str(source), str(output)]) == 0

    data = load_pkl(output)
    assert data["__author__"] == "timm" and data["matching_heuristics"] is True
    weights = data["model"]
    timm_state = timm_model.state_dict()
    # stage i >= 1's patch merging of timm is stage i-1's downsample in official naming
    torch.testing.assert_close(weights["layers.0.downsample.reduction.weight"],
                               timm_state["layers.1.downsample.reduction.weight"], rtol=0, atol=0)
    assert not any(k.startswith("layers.3.downsample") for k in weights)
    torch.testing.assert_close(weights["head.weight"], timm_state["head.fc.weight"], rtol=0, atol=0)

    ours = D2SwinTransformer(window_size=4, drop_path_rate=0.0, **SMALL).eval()
    extra = _load_backbone(ours, weights)
    assert extra == {"head.weight", "head.bias", "norm.weight", "norm.bias"}  # kept, as the official converter
    x = torch.randn(2, 3, 256, 384)
    with torch.no_grad():
        features = ours(x)
        stages = timm_model.forward_intermediates(x, intermediates_only=True)  # [B, C, H, W] per stage, no norm
    for i, name in enumerate(["res2", "res3", "res4", "res5"]):
        expected = F.layer_norm(stages[i].permute(0, 2, 3, 1), (stages[i].shape[1],)).permute(0, 3, 1, 2)
        assert features[name].shape == expected.shape
        torch.testing.assert_close(features[name], expected, rtol=0, atol=1e-5)


def _official_state(model: D2SwinTransformer, input_size=(224, 224), num_classes=10, window=7) -> dict:
    """What microsoft/Swin-Transformer saves for this architecture: our names without the per-stage norms, plus a
    final ``norm``, the classifier ``head`` and ``attn_mask`` buffers of shifted blocks (where the feature map
    is larger than the window), and ``absolute_pos_embed`` as [1, N, C]."""
    state = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("norm")}
    last = model.num_features[-1]
    state["norm.weight"], state["norm.bias"] = torch.rand(last) + 0.5, torch.rand(last) - 0.5
    state["head.weight"], state["head.bias"] = torch.randn(num_classes, last), torch.randn(num_classes)
    if "absolute_pos_embed" in state:
        state["absolute_pos_embed"] = state["absolute_pos_embed"].flatten(2).transpose(1, 2)
    size = input_size[0] // 4
    for i, stage in enumerate(model.layers):
        if size > window:
            for j in range(1, len(stage.blocks), 2):
                state[f"layers.{i}.blocks.{j}.attn_mask"] = shifted_window_mask(size, size, window, window // 2)
        size //= 2
    return state


@pytest.mark.parametrize("ape", [False, True])
def test_official_round_trip(tmp_path, ape):
    torch.manual_seed(0)
    source_model = D2SwinTransformer(window_size=7, ape=ape, drop_path_rate=0.0, **SMALL).eval()
    _randomize_norms(source_model)
    for i in range(4):  # per-stage norms are not in official files: keep them as a fresh model has them
        getattr(source_model, f"norm{i}").reset_parameters()
    official = _official_state(source_model)
    assert sum(k.endswith("attn_mask") for k in official) == 3  # 56x56, 28x28, 14x14 maps; not 7x7
    source, output = tmp_path / "swin_official.pth", tmp_path / "swin_official.pkl"
    torch.save({"model": official}, source)
    assert _tool("convert-pretrained-swin-model-to-d2").main([str(source), str(output)]) == 0

    data = load_pkl(output)
    assert data["__author__"] == "third_party" and data["matching_heuristics"] is True
    weights = data["model"]
    assert set(weights) == set(official)  # everything kept, head / final norm / attn_mask included, as upstream
    for k, v in official.items():
        if k != "absolute_pos_embed":
            torch.testing.assert_close(weights[k], v, rtol=0, atol=0)

    fresh = D2SwinTransformer(window_size=7, ape=ape, drop_path_rate=0.0, **SMALL).eval()
    extra = _load_backbone(fresh, weights)
    assert extra == {"head.weight", "head.bias", "norm.weight", "norm.bias"} | {
        k for k in official if k.endswith("attn_mask")}
    if ape:
        torch.testing.assert_close(fresh.absolute_pos_embed, source_model.absolute_pos_embed, rtol=0, atol=0)
    x = torch.randn(1, 3, 100, 132)
    with torch.no_grad():
        a, b = source_model(x), fresh(x)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0)


def test_official_layout_through_timm_converter_gives_the_same_names(tmp_path):
    """Old timm (< 0.9) files use the official layout; the timm converter only renames ``head.fc``."""
    torch.manual_seed(0)
    official = _official_state(D2SwinTransformer(window_size=7, drop_path_rate=0.0, **SMALL))
    official["head.fc.weight"], official["head.fc.bias"] = official.pop("head.weight"), official.pop("head.bias")
    source, output = tmp_path / "old_timm.pth", tmp_path / "old_timm.pkl"
    torch.save(official, source)
    assert _tool("convert-timm-swin-to-d2").main([str(source), str(output)]) == 0
    weights = load_pkl(output)["model"]
    expected = {k for k in official if not k.endswith("attn_mask")} - {"head.fc.weight", "head.fc.bias"}
    assert set(weights) == expected | {"head.weight", "head.bias"}
    torch.testing.assert_close(weights["layers.2.downsample.norm.bias"], official["layers.2.downsample.norm.bias"])


def _run_failing(tool: str, source: Path, output: Path, caplog) -> str:
    with caplog.at_level(logging.ERROR):
        assert _tool(tool).main([str(source), str(output)]) == 1
    assert not output.exists()
    assert sorted(p.name for p in output.parent.iterdir()) == [source.name]  # no temporary file left behind
    return caplog.text


@pytest.mark.parametrize("tool", ["convert-pretrained-swin-model-to-d2", "convert-timm-swin-to-d2"])
def test_file_without_state_dict_is_refused(tmp_path, tool, caplog):
    source = tmp_path / "train_state.pth"
    torch.save({"epoch": 3, "max_accuracy": 81.2}, source)
    text = _run_failing(tool, source, tmp_path / "out.pkl", caplog)
    assert str(source) in text and "expected a state dict" in text


@pytest.mark.parametrize("tool", ["convert-pretrained-swin-model-to-d2", "convert-timm-swin-to-d2"])
def test_non_swin_state_dict_is_refused(tmp_path, tool, caplog):
    source = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "layer1.0.conv1.weight": torch.zeros(64, 64, 1, 1)}, source)
    text = _run_failing(tool, source, tmp_path / "out.pkl", caplog)
    assert "not a" in text and "patch_embed.proj.weight" in text and str(source) in text


def test_timm_file_given_to_the_official_converter(tmp_path, caplog):
    model = timm_swin.SwinTransformer(img_size=64, window_size=4, num_classes=3, **SMALL)
    source = tmp_path / "timm.pth"
    torch.save(model.state_dict(), source)
    text = _run_failing("convert-pretrained-swin-model-to-d2", source, tmp_path / "out.pkl", caplog)
    assert "convert-timm-swin-to-d2.py" in text


def test_unknown_names_are_listed(tmp_path, caplog):
    state = _official_state(D2SwinTransformer(window_size=7, drop_path_rate=0.0, **SMALL))
    state["layers.0.blocks.0.attn.logit_scale"] = torch.zeros(1, 1, 1)  # Swin V2
    source = tmp_path / "swinv2.pth"
    torch.save({"model": state}, source)
    text = _run_failing("convert-pretrained-swin-model-to-d2", source, tmp_path / "out.pkl", caplog)
    assert "layers.0.blocks.0.attn.logit_scale" in text
    caplog.clear()
    text = _run_failing("convert-timm-swin-to-d2", source, tmp_path / "out.pkl", caplog)
    assert "Swin V2" in text


def test_existing_output_is_kept_on_failure(tmp_path, caplog):
    source, output = tmp_path / "bad.pth", tmp_path / "swin.pkl"
    source.write_bytes(b"not a pytorch file")
    output.write_bytes(b"previous")
    with caplog.at_level(logging.ERROR):
        assert _tool("convert-timm-swin-to-d2").main([str(source), str(output)]) == 1
    assert output.read_bytes() == b"previous"
    assert "not a readable PyTorch weight file" in caplog.text


def test_converted_swin_loads_into_a_mask2former_model_through_model_weights(tmp_path, caplog):
    """MODEL.WEIGHTS with a converted ImageNet Swin file: every backbone tensor is matched into ``backbone.`` by
    the suffix heuristic (and logged); the classifier, final norm and attn_mask buffers are reported unexpected;
    the head and the per-stage norms stay as initialised (missing)."""
    from mask2former_rankseg.config import get_cfg
    from mask2former_rankseg.engine import Checkpointer
    from mask2former_rankseg.modeling import build_model

    torch.manual_seed(0)
    source_model = D2SwinTransformer(window_size=7, drop_path_rate=0.0, **SMALL).eval()
    _randomize_norms(source_model)
    source, output = tmp_path / "swin_tiny_patch4_window7_224.pth", tmp_path / "swin.pkl"
    torch.save({"model": _official_state(source_model)}, source)
    assert _tool("convert-pretrained-swin-model-to-d2").main([str(source), str(output)]) == 0

    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / "configs/synthetic/maskformer2_R18_synthetic.yaml"))
    cfg.merge_from_list(["MODEL.BACKBONE.NAME", "D2SwinTransformer", "MODEL.SWIN.EMBED_DIM", 32,
                         "MODEL.SWIN.DEPTHS", [2, 2, 2, 2], "MODEL.SWIN.NUM_HEADS", [1, 2, 4, 8],
                         "MODEL.SWIN.DROP_PATH_RATE", 0.0, "MODEL.WEIGHTS", str(output)])
    model = build_model(cfg).eval()
    with caplog.at_level(logging.INFO):
        incompatible = Checkpointer(model).load(cfg.MODEL.WEIGHTS)["incompatible"]
    backbone_keys = [k for k in source_model.state_dict() if not k.startswith("norm")]
    assert f"Matched {len(backbone_keys)} of" in caplog.text and f"'backbone.': {len(backbone_keys)}" in caplog.text
    assert not incompatible.shape_mismatch
    assert {k for k in incompatible.unexpected} == {"head.weight", "head.bias", "norm.weight", "norm.bias"} | {
        f"layers.{i}.blocks.1.attn_mask" for i in range(3)}
    assert not [k for k in incompatible.missing if k.startswith("backbone.") and not k.startswith("backbone.norm")]
    for k in backbone_keys:
        torch.testing.assert_close(model.state_dict()[f"backbone.{k}"], source_model.state_dict()[k], rtol=0, atol=0)

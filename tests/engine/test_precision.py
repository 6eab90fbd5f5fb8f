"""MODEL.PRECISION: the key, bfloat16 autocast around the model with the sensitive parts in float32, the
automatic fallback to float32 (logged once), and bf16 inference agreeing with fp32."""

from __future__ import annotations

import logging

import pytest
import torch
from helpers import TINY_LABELS, tiny_mask2former_cfg

from mask2former_rankseg.config import ConfigError, get_cfg
from mask2former_rankseg.engine import Trainer
from mask2former_rankseg.modeling import build_model, validate_model_config
from mask2former_rankseg.utils import precision
from mask2former_rankseg.utils.precision import (
    Float32LayerNorm,
    cpu_bf16_flags,
    float32_region,
    precision_context,
    prepare_model_for_precision,
    resolve_precision,
)


@pytest.fixture
def bf16_everywhere(monkeypatch):
    """bf16 treated as paying on this machine (autocast works on any CPU, only slower without the flags)."""
    monkeypatch.setattr(precision, "_bf16_unavailable_reason", lambda device_type: None)


def test_the_key_defaults_to_fp32_and_rejects_other_values():
    cfg = get_cfg()
    assert cfg.MODEL.PRECISION == "fp32"
    cfg.MODEL.PRECISION = "bf16"
    validate_model_config(cfg)
    cfg.MODEL.PRECISION = "fp16"
    with pytest.raises(ConfigError, match="MODEL.PRECISION"):
        validate_model_config(cfg)


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    with_avx = tmp_path / "avx"
    with_avx.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 avx512_vnni\n\n"
                        "processor\t: 1\nflags\t\t: fpu sse avx512f avx512_bf16 avx512_vnni\n")
    plain = tmp_path / "plain"
    plain.write_text("processor\t: 0\nflags\t\t: fpu sse avx2\n")
    assert cpu_bf16_flags(str(with_avx)) == ("avx512_bf16",)
    assert cpu_bf16_flags(str(plain)) == ()
    assert cpu_bf16_flags(str(tmp_path / "missing")) == ()


def test_fallback_to_fp32_is_logged_once(monkeypatch, caplog):
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: ())
    monkeypatch.setattr(precision, "_LOGGED", set())
    with caplog.at_level(logging.WARNING, logger=precision.__name__):
        assert resolve_precision("bf16", "cpu") == "fp32"
        assert resolve_precision("bf16", torch.device("cpu")) == "fp32"
        with precision_context("bf16", "cpu"):
            assert not torch.is_autocast_enabled("cpu")
    messages = [r.getMessage() for r in caplog.records if r.name == precision.__name__]
    assert len(messages) == 1 and "float32" in messages[0] and "avx512_bf16" in messages[0]
    assert resolve_precision("fp32", "cpu") == "fp32"


def test_float32_region_and_layernorm_under_autocast(bf16_everywhere):
    @float32_region
    def dtypes(x, extra):
        return x.dtype, extra["y"].dtype, torch.is_autocast_enabled("cpu")

    norm = Float32LayerNorm(6)
    with precision_context("bf16", "cpu"):
        assert torch.is_autocast_enabled("cpu")
        x = torch.nn.functional.linear(torch.randn(2, 4), torch.randn(6, 4))
        assert x.dtype == torch.bfloat16
        assert dtypes(x, {"y": x}) == (torch.float32, torch.float32, False)
        assert norm(x).dtype == torch.float32
    assert norm.state_dict().keys() == torch.nn.LayerNorm(6).state_dict().keys()


def _tiny_model(tmp_path, value: str, rankseg: bool = True):
    cfg = tiny_mask2former_cfg(tmp_path, [*TINY_LABELS, "MODEL.PRECISION", value], rankseg=rankseg)
    torch.manual_seed(0)
    return cfg, prepare_model_for_precision(build_model(cfg), value, "cpu")


def _record_dtypes(module: torch.nn.Module, seen: list):
    def hook(_, __, output):
        seen.extend(t.dtype for t in (output.values() if isinstance(output, dict) else [output]))
    return module.register_forward_hook(hook)


def test_backbone_runs_in_bf16_and_losses_stay_float32(tmp_path, bf16_everywhere):
    cfg, model = _tiny_model(tmp_path, "bf16")
    first_conv = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.weight.is_contiguous(memory_format=torch.channels_last)
    seen: list = []
    handle = _record_dtypes(model.backbone, seen)
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8, generator=g)
    from mask2former_rankseg.structures import Instances

    masks = torch.zeros(2, 64, 64, dtype=torch.bool)
    masks[0, :32], masks[1, 32:] = True, True
    inst = Instances((64, 64), gt_classes=torch.tensor([1, 7]), gt_masks=masks)
    model.train()
    with precision_context("bf16", "cpu"):
        losses = model([{"image": image, "instances": inst}])
    handle.remove()
    assert seen and all(d == torch.bfloat16 for d in seen)
    assert all(v.dtype == torch.float32 for v in losses.values()), {k: v.dtype for k, v in losses.items()}
    assert "loss_ml" in losses and all(bool(torch.isfinite(v)) for v in losses.values())
    sum(losses.values()).backward()
    assert first_conv.weight.grad is not None and first_conv.weight.grad.dtype == torch.float32


@pytest.mark.parametrize("rankseg", [False, True])
def test_bf16_inference_argmax_agrees_with_fp32(tmp_path, bf16_everywhere, rankseg):
    """A weak check: at the tiny model's default random initialisation one class wins nearly every pixel, so the
    agreement (100 % here) says little; README gives the figures on trained synthetic models."""
    _, model = _tiny_model(tmp_path, "bf16", rankseg=rankseg)
    model.eval()
    g = torch.Generator().manual_seed(1)
    inputs = [{"image": torch.randint(0, 256, (3, 64, 96), dtype=torch.uint8, generator=g)} for _ in range(2)]
    with torch.no_grad():
        fp32 = [out["sem_seg"] for out in model(inputs)]
        with precision_context("bf16", "cpu"):
            bf16 = [out["sem_seg"] for out in model(inputs)]
    assert all(s.dtype == torch.float32 for s in bf16)  # post-processing in float32
    agree = torch.cat([(a.argmax(0) == b.argmax(0)).flatten() for a, b in zip(fp32, bf16)]).float().mean().item()
    print(f"bf16 vs fp32 argmax agreement (random weights, RankSeg {rankseg}): {100 * agree:.2f} %")
    assert agree >= 0.95


def test_trainer_step_and_evaluation_in_bf16(tmp_path, dataset_root, bf16_everywhere):
    cfg = tiny_mask2former_cfg(tmp_path, ["MODEL.PRECISION", "bf16", "SOLVER.MAX_ITER", "1", "TEST.EVAL_PERIOD", "0"])
    trainer = Trainer(cfg)
    assert trainer.precision == "bf16"
    seen: list = []
    handle = _record_dtypes(trainer.model.backbone, seen)
    trainer.train()
    assert seen and all(d == torch.bfloat16 for d in seen)
    seen.clear()
    results = Trainer.test(cfg, trainer.model)
    handle.remove()
    assert seen and all(d == torch.bfloat16 for d in seen)
    assert "sem_seg" in results


def test_deformable_attention_sampling_offsets_stay_float32(bf16_everywhere):
    from mask2former_rankseg.ops import MSDeformAttn

    attn = MSDeformAttn(d_model=32, n_levels=2, n_heads=2, n_points=2)
    query = torch.randn(1, 5, 32)
    with precision_context("bf16", "cpu"):
        offsets, weights = attn._offsets_and_weights(query)
        assert torch.nn.functional.linear(query, attn.value_proj.weight).dtype == torch.bfloat16
    assert offsets.dtype == torch.float32 and weights.dtype == torch.float32
    torch.testing.assert_close(offsets, attn._offsets_and_weights(query)[0])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_pixel_decoder_runs_in_bf16_but_in_float32_under_float16_autocast(tmp_path, bf16_everywhere, dtype):
    """bfloat16 has float32's range, so the deformable encoder's linear layers and the FPN convolutions run in it;
    under float16 autocast (SOLVER.AMP) the pixel decoder runs in float32, as upstream's. The sampling offsets
    are float32 either way."""
    _, model = _tiny_model(tmp_path, "bf16")
    decoder = model.sem_seg_head.pixel_decoder
    layer = decoder.transformer.encoder.layers[0]
    seen = {"linear1": [], "mask_features": [], "sampling_offsets": []}
    handles = [_record_dtypes(layer.linear1, seen["linear1"]), _record_dtypes(decoder.mask_features,
                                                                             seen["mask_features"]),
               _record_dtypes(layer.self_attn.sampling_offsets, seen["sampling_offsets"])]
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype):
        out = model([{"image": torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)}])
    for handle in handles:
        handle.remove()
    expected = torch.bfloat16 if dtype == torch.bfloat16 else torch.float32
    assert seen["linear1"] == [expected] and seen["mask_features"] == [expected]
    assert seen["sampling_offsets"] == [torch.float32]
    assert out[0]["sem_seg"].dtype == torch.float32


def test_model_compile_key_compiles_in_place_and_keeps_parameter_names(tmp_path):
    """MODEL.COMPILE: Trainer.build_model compiles the forward in place (nn.Module.compile), so checkpoints keep
    their names; a non-bool value is refused naming the key. (Running the compiled model is tests/modeling/
    test_compile.py's job.)"""
    cfg = tiny_mask2former_cfg(tmp_path, [*TINY_LABELS])
    plain = Trainer.build_model(cfg)
    assert plain._compiled_call_impl is None
    cfg.defrost()
    cfg.MODEL.COMPILE = True
    compiled = Trainer.build_model(cfg)
    assert compiled._compiled_call_impl is not None
    assert list(compiled.state_dict()) == list(plain.state_dict())
    cfg.MODEL.COMPILE = "yes"
    with pytest.raises(ConfigError, match="MODEL.COMPILE"):
        validate_model_config(cfg)

"""D2SwinTransformer: upstream's names, shapes and parameter counts, padding, shifted-window masking, APE /
patch norm / OUT_FEATURES options and gradient checkpointing."""

from __future__ import annotations

import json
import math

import pytest
import torch
from helpers import FIXTURES
from torch.nn import functional as F

from mask2former_rankseg.config import get_cfg
from mask2former_rankseg.modeling.backbone import D2SwinTransformer
from mask2former_rankseg.modeling.backbone.swin import (
    SwinBlock,
    WindowAttention,
    relative_position_index,
    shifted_window_mask,
)
from mask2former_rankseg.modeling.build import build_backbone
from mask2former_rankseg.modeling.registry import BACKBONE_REGISTRY

# name: (EMBED_DIM, DEPTHS, NUM_HEADS, WINDOW_SIZE, PRETRAIN_IMG_SIZE), as in upstream's Swin configs
VARIANTS = {
    "tiny": (96, [2, 2, 6, 2], [3, 6, 12, 24], 7, 224),
    "small": (96, [2, 2, 18, 2], [3, 6, 12, 24], 7, 224),
    "base": (128, [2, 2, 18, 2], [4, 8, 16, 32], 12, 384),
    "large": (192, [2, 2, 18, 2], [6, 12, 24, 48], 12, 384),
}

# Parameter counts of the backbone (no classifier head, no final norm; one LayerNorm norm{i} per stage), by hand.
# For channels C, heads h, window w and MLP ratio 4:
#   block     = norm1 2C + qkv (3C*C + 3C) + proj (C*C + C) + norm2 2C + fc1 (4C*C + 4C) + fc2 (4C*C + C)
#               + relative position table (2w-1)^2 * h                         = 12C^2 + 13C + (2w-1)^2 h
#   merging   = norm 2*4C + reduction 4C*2C (no bias)                          = 8C^2 + 8C
#   embedding = conv 3*C*4*4 + C + norm 2C                                     = 51C
#   norm{i}   = 2C
# Swin-T (C = 96, 192, 384, 768; w = 7 -> 169):
#   stage 0: 2 * (110592 + 1248 + 169*3)      = 224,694   + merging 73,728 + 768      = 74,496
#   stage 1: 2 * (442368 + 2496 + 169*6)      = 891,756   + merging 294,912 + 1,536   = 296,448
#   stage 2: 6 * (1769472 + 4992 + 169*12)    = 10,658,952 + merging 1,179,648 + 3,072 = 1,182,720
#   stage 3: 2 * (7077888 + 9984 + 169*24)    = 14,183,856
#   embedding 51*96 = 4,896; norms 2*(96+192+384+768) = 2,880            -> total 27,520,698
#   (= timm's/official Swin-T 28,288,354 - head 769,000 - final norm 1,536 + stage norms 2,880)
# Swin-S: 12 more stage-2 blocks: 27,520,698 + 12 * 1,776,492                 -> 48,838,602
# Swin-B (C = 128..1024, w = 12 -> 529), Swin-L (C = 192..1536) by the same sums -> 86,880,376 and 195,201,204
PARAM_COUNTS = {"tiny": 27_520_698, "small": 48_838_602, "base": 86_880_376, "large": 195_201_204}


def _cfg(variant: str = "tiny", **swin):
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.NAME = "D2SwinTransformer"
    dim, depths, heads, window, pretrain = VARIANTS[variant]
    s = cfg.MODEL.SWIN
    s.EMBED_DIM, s.DEPTHS, s.NUM_HEADS, s.WINDOW_SIZE, s.PRETRAIN_IMG_SIZE = dim, depths, heads, window, pretrain
    for k, v in swin.items():
        s[k] = v
    return cfg


def _tiny_cfg(**swin):
    """A small Swin for forward tests: 16 channels, window 7."""
    defaults = dict(EMBED_DIM=16, DEPTHS=[2, 2, 2, 2], NUM_HEADS=[1, 2, 2, 4], WINDOW_SIZE=7, PRETRAIN_IMG_SIZE=64,
                    DROP_PATH_RATE=0.0)
    defaults.update(swin)
    return _cfg("tiny", **defaults)


def _swin_t_expected_state():
    """Upstream's Swin-T backbone state (APE off, PATCH_NORM on): names and shapes, from its architecture."""
    dim, depths, heads, w, _ = VARIANTS["tiny"]
    expected = {"patch_embed.proj.weight": (dim, 3, 4, 4), "patch_embed.proj.bias": (dim,),
                "patch_embed.norm.weight": (dim,), "patch_embed.norm.bias": (dim,)}
    for i in range(4):
        C = dim * 2**i
        for j in range(depths[i]):
            b = f"layers.{i}.blocks.{j}."
            expected.update({
                b + "norm1.weight": (C,), b + "norm1.bias": (C,),
                b + "attn.relative_position_bias_table": ((2 * w - 1) ** 2, heads[i]),
                b + "attn.relative_position_index": (w * w, w * w),
                b + "attn.qkv.weight": (3 * C, C), b + "attn.qkv.bias": (3 * C,),
                b + "attn.proj.weight": (C, C), b + "attn.proj.bias": (C,),
                b + "norm2.weight": (C,), b + "norm2.bias": (C,),
                b + "mlp.fc1.weight": (4 * C, C), b + "mlp.fc1.bias": (4 * C,),
                b + "mlp.fc2.weight": (C, 4 * C), b + "mlp.fc2.bias": (C,),
            })
        if i < 3:
            expected.update({f"layers.{i}.downsample.reduction.weight": (2 * C, 4 * C),
                             f"layers.{i}.downsample.norm.weight": (4 * C,),
                             f"layers.{i}.downsample.norm.bias": (4 * C,)})
        expected.update({f"norm{i}.weight": (C,), f"norm{i}.bias": (C,)})
    return expected


def _build_meta(cfg) -> D2SwinTransformer:
    with torch.device("meta"):  # shapes and counts without allocating ~200M parameters
        return build_backbone(cfg)


def test_registered_under_upstream_name():
    assert "D2SwinTransformer" in BACKBONE_REGISTRY
    model = build_backbone(_tiny_cfg())
    assert isinstance(model, D2SwinTransformer)
    assert model.size_divisibility == 32
    shapes = model.output_shape()
    assert list(shapes) == ["res2", "res3", "res4", "res5"]
    assert [(s.channels, s.stride) for s in shapes.values()] == [(16, 4), (32, 8), (64, 16), (128, 32)]


def test_swin_t_state_dict_names_and_shapes():
    model = _build_meta(_cfg("tiny"))
    state = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = _swin_t_expected_state()
    assert set(state) == set(expected), (sorted(set(state) - set(expected)), sorted(set(expected) - set(state)))
    assert state == expected
    assert len(state) == 189
    # relative_position_index is a persistent buffer (in state dicts, not a parameter), as upstream
    params = dict(model.named_parameters())
    assert "layers.0.blocks.0.attn.relative_position_index" not in params
    assert "layers.0.blocks.0.attn.relative_position_bias_table" in params


def test_swin_b_state_dict_matches_upstream_record():
    """Names and shapes recorded from the model upstream's code builds for its COCO Swin-B config."""
    path = FIXTURES / "upstream_state_dict_coco_panoptic_swin_base_rankseg.json"
    if not path.is_file():
        pytest.skip(f"{path} is not present")
    recorded = json.loads(path.read_text())["state_dict"]
    upstream = {k[len("backbone."):]: tuple(v) for k, v in recorded.items() if k.startswith("backbone.")}
    model = _build_meta(_cfg("base"))
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == upstream


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_parameter_counts(variant):
    model = _build_meta(_cfg(variant))
    assert sum(p.numel() for p in model.parameters()) == PARAM_COUNTS[variant]
    dim = VARIANTS[variant][0]
    assert [s.channels for s in model.output_shape().values()] == [dim, 2 * dim, 4 * dim, 8 * dim]


def test_relative_position_index_by_hand():
    w = 3
    index = relative_position_index(w)
    for a in range(w * w):
        for b in range(w * w):
            dy, dx = a // w - b // w, a % w - b % w
            assert index[a, b] == (dy + w - 1) * (2 * w - 1) + (dx + w - 1)


def test_window_attention_equals_naive_formula():
    torch.manual_seed(0)
    w, heads, C = 3, 2, 8
    attn = WindowAttention(C, w, heads).eval()
    x = torch.randn(4, w * w, C)
    mask = torch.where(torch.rand(2, w * w, w * w) < 0.3, -100.0, 0.0)
    out = attn(x, mask)
    qkv = attn.qkv(x).view(4, w * w, 3, heads, C // heads)
    expected = torch.empty(4, w * w, heads, C // heads)
    for n in range(4):
        for h in range(heads):
            q, k, v = qkv[n, :, 0, h], qkv[n, :, 1, h], qkv[n, :, 2, h]
            logits = q @ k.T * (C // heads) ** -0.5
            for a in range(w * w):
                for b in range(w * w):
                    dy, dx = a // w - b // w, a % w - b % w
                    logits[a, b] += attn.relative_position_bias_table[(dy + w - 1) * (2 * w - 1) + dx + w - 1, h]
            logits = logits + mask[n % 2]  # windows are batch-major: window index = n mod nW
            expected[n, :, h] = logits.softmax(-1) @ v
    torch.testing.assert_close(out, attn.proj(expected.reshape(4, w * w, C)), atol=1e-5, rtol=1e-5)


def _cell(pos: int, w: int, s: int) -> int:
    """Which window (in original coordinates) a position belongs to: windows [0, w) ... without shift, and
    [0, s), [s, s + w), ... with a cyclic shift s (no wrap-around: the last and first pieces stay apart)."""
    return (pos + (w - s) % w) // w


@pytest.mark.parametrize("shift", [0, 2])
@pytest.mark.parametrize("size", [(8, 8), (6, 7)])
def test_block_sees_only_its_window(shift, size):
    """Changing input tokens outside a query's (shifted) window leaves its output unchanged; changing one inside
    changes it. (6, 7) is padded to (8, 8): the mask must be built for the padded size."""
    torch.manual_seed(0)
    w, (H, W) = 4, size
    block = SwinBlock(8, 2, window_size=w, shift_size=shift).eval()
    with torch.no_grad():  # strong attention, so that a visible token's change shows
        for p in block.parameters():
            p.normal_(0.0, 0.5)
    Hp, Wp = math.ceil(H / w) * w, math.ceil(W / w) * w
    mask = shifted_window_mask(Hp, Wp, w, shift)
    x = torch.randn(1, H, W, 8)
    base = block(x, mask)
    for qy, qx in [(0, 0), (1, 2), (H - 1, W - 1), (3, 4), (5, 1)]:
        rows = torch.tensor([_cell(y, w, shift) == _cell(qy, w, shift) for y in range(H)])
        cols = torch.tensor([_cell(x_, w, shift) == _cell(qx, w, shift) for x_ in range(W)])
        visible = rows[:, None] & cols[None, :]
        changed = torch.where(visible[None, :, :, None], x, torch.randn_like(x))
        torch.testing.assert_close(block(changed, mask)[0, qy, qx], base[0, qy, qx], atol=1e-6, rtol=0)
        others = visible.clone()
        others[qy, qx] = False
        if others.any():  # a visible token other than the query itself does change the output
            y, x_ = others.nonzero()[0].tolist()
            poked = x.clone()
            poked[0, y, x_] = torch.randn(8)
            assert (block(poked, mask)[0, qy, qx] - base[0, qy, qx]).abs().max() > 1e-3


def test_forward_on_non_divisible_input():
    torch.manual_seed(0)
    model = build_backbone(_tiny_cfg()).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 70, 90))
    # patch embedding pads 70x90 to 72x92 -> 18x23, then patch merging rounds up: 9x12, 5x6, 3x3
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "res2": (1, 16, 18, 23), "res3": (1, 32, 9, 12), "res4": (1, 64, 5, 6), "res5": (1, 128, 3, 3)}
    assert all(torch.isfinite(v).all() for v in out.values())
    # each output went through its LayerNorm (weight 1, bias 0 at init): zero mean, unit variance per position
    torch.testing.assert_close(out["res3"].mean(1), torch.zeros(1, 9, 12), atol=1e-5, rtol=0)


def test_padding_does_not_leak_into_the_image():
    """Upstream pads on the right/bottom: outputs away from the padded border do not depend on the pad size
    beyond the attention window (here: crop-invariance of the first patch row's embedding)."""
    torch.manual_seed(0)
    model = build_backbone(_tiny_cfg()).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a = model.patch_embed(x)
        b = model.patch_embed(x[:, :, :62, :61])  # padded back to 64x64 with zeros
    torch.testing.assert_close(a[:, :15, :15], b[:, :15, :15])
    assert b.shape == a.shape


def test_ape_and_patch_norm_change_the_key_set():
    base = set(build_backbone(_tiny_cfg()).state_dict())
    ape = build_backbone(_tiny_cfg(APE=True))
    assert set(ape.state_dict()) - base == {"absolute_pos_embed"}
    assert tuple(ape.absolute_pos_embed.shape) == (1, 16, 16, 16)  # PRETRAIN_IMG_SIZE 64 / patch 4
    no_norm = set(build_backbone(_tiny_cfg(PATCH_NORM=False)).state_dict())
    assert base - no_norm == {"patch_embed.norm.weight", "patch_embed.norm.bias"}
    with torch.no_grad():  # the embedding is resized (bicubic) to the input's grid
        out = ape.eval()(torch.randn(1, 3, 40, 52))
    assert tuple(out["res2"].shape) == (1, 16, 10, 13)


def test_out_features_subset():
    torch.manual_seed(0)
    full = build_backbone(_tiny_cfg()).eval()
    part = build_backbone(_tiny_cfg(OUT_FEATURES=["res2", "res4"])).eval()
    assert set(part.state_dict()) == set(full.state_dict())  # norm0..norm3 always exist, as upstream
    part.load_state_dict(full.state_dict())
    assert list(part.output_shape()) == ["res2", "res4"]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = full(x), part(x)
    assert list(b) == ["res2", "res4"]
    for k in b:
        torch.testing.assert_close(b[k], a[k])
    with pytest.raises(ValueError, match="MODEL.SWIN.OUT_FEATURES"):
        build_backbone(_tiny_cfg(OUT_FEATURES=["res6"]))


def test_drop_path_increases_linearly_over_all_blocks():
    model = build_backbone(_tiny_cfg(DROP_PATH_RATE=0.7, DEPTHS=[2, 2, 3, 1]))
    rates = [blk.drop_path.p for stage in model.layers for blk in stage.blocks]
    assert rates == pytest.approx([0.1 * i for i in range(8)], abs=1e-6)


def test_initialization():
    torch.manual_seed(0)
    model = build_backbone(_cfg("tiny", DEPTHS=[2, 2, 2, 2]))
    qkv = model.layers[2].blocks[0].attn.qkv
    assert abs(qkv.weight.std().item() - 0.02) < 0.002 and qkv.weight.abs().max() <= 2.0
    assert torch.count_nonzero(qkv.bias) == 0
    table = model.layers[0].blocks[1].attn.relative_position_bias_table
    assert abs(table.std().item() - 0.02) < 0.005
    assert torch.equal(model.norm3.weight, torch.ones(768)) and torch.count_nonzero(model.norm3.bias) == 0


def test_gradient_checkpointing_gives_identical_outputs_and_gradients():
    torch.manual_seed(0)
    plain = build_backbone(_tiny_cfg(DROP_PATH_RATE=0.3)).train()
    ckpt = build_backbone(_tiny_cfg(DROP_PATH_RATE=0.3, USE_CHECKPOINT=True)).train()
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 48, 40)
    calls = {"plain": 0, "ckpt": 0}
    for name, model in (("plain", plain), ("ckpt", ckpt)):
        model.layers[1].blocks[0].register_forward_pre_hook(lambda *_, n=name: calls.__setitem__(n, calls[n] + 1))
    results = []
    for model in (plain, ckpt):
        torch.manual_seed(1)  # same drop-path draws
        out = model(x)
        sum((v * torch.linspace(-1, 1, v.numel()).view_as(v)).sum() for v in out.values()).backward()
        results.append((out, {k: p.grad for k, p in model.named_parameters()}))
    (out_a, grad_a), (out_b, grad_b) = results
    assert calls == {"plain": 1, "ckpt": 2}  # the checkpointed block ran again in the backward pass
    for k in out_a:
        torch.testing.assert_close(out_b[k], out_a[k], rtol=0, atol=1e-6)
    for k in grad_a:
        torch.testing.assert_close(grad_b[k], grad_a[k], rtol=0, atol=1e-6)
    assert any(g.abs().sum() > 0 for g in grad_a.values())


def test_rejects_bad_shapes():
    model = build_backbone(_tiny_cfg())
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        model(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match="NUM_HEADS"):
        build_backbone(_tiny_cfg(NUM_HEADS=[1, 2, 4]))
    with pytest.raises(ValueError, match="NUM_HEADS"):
        build_backbone(_tiny_cfg(NUM_HEADS=[3, 2, 2, 4]))


def test_matches_layer_norm_of_stage_tokens():
    """res{i} is norm{i} applied to the stage's tokens (after all its blocks, before patch merging)."""
    torch.manual_seed(0)
    model = build_backbone(_tiny_cfg()).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = model(x)
        t = model.patch_embed(x)
        t = model.layers[0](t)
        t = model.layers[1](model.layers[0].downsample(t))
    torch.testing.assert_close(out["res3"], F.layer_norm(t, (32,)).permute(0, 3, 1, 2))

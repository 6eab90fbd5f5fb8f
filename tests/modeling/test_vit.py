"""ViT (Segmenter's): output names, shapes and strides, the position embedding resized against a hand-computed
bicubic reference, timm's .pth / .safetensors and jax .npz weights loaded by name through the Checkpointer with
features equal to timm's own forward, the class-embedding variant, layer ids and parameter counts."""

from __future__ import annotations

import logging
import math
import sys

import numpy as np
import pytest
import torch
from helpers import WithBackbone

from mask2former_rankseg.config import get_cfg
from mask2former_rankseg.engine import Checkpointer
from mask2former_rankseg.modeling.backbone import ViT
from mask2former_rankseg.modeling.backbone.vit import resize_pos_embed
from mask2former_rankseg.modeling.build import build_backbone

timm = pytest.importorskip("timm")
timm_vit = pytest.importorskip("timm.models.vision_transformer")
safetensors_torch = pytest.importorskip("safetensors.torch")

TINY = dict(EMBED_DIM=32, DEPTH=3, NUM_HEADS=2, PATCH_SIZE=8, IMG_SIZE=32, DROP_PATH_RATE=0.0)


def _cfg(**vit):
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.NAME = "build_vit_backbone"
    for k, v in vit.items():
        cfg.MODEL.VIT[k] = v
    return cfg


def _tiny(**vit) -> ViT:
    return build_backbone(_cfg(**{**TINY, **vit})).eval()


def _timm_tiny(img_size: int = 32, **kwargs):
    """timm's ViT with TINY's hyper-parameters, every tensor random (so norms and biases matter too)."""
    model = timm_vit.VisionTransformer(img_size=img_size, patch_size=8, embed_dim=32, depth=3, num_heads=2,
                                       num_classes=10, **kwargs).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def _timm_maps(model, x, indices):
    """timm's block outputs [B, C, h, w] (class token removed; the last one after the final norm)."""
    maps = model.forward_intermediates(x, indices=list(indices), norm=False, output_fmt="NCHW",
                                       intermediates_only=True)
    last = model.forward_features(x)[:, 1:]
    B, C, h, w = maps[-1].shape
    maps[-1] = last.transpose(1, 2).reshape(B, C, h, w)
    return maps


# -- shapes -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(32, 32), (48, 64)])
def test_outputs_names_shapes_and_strides(size):
    model = _tiny(OUT_INDICES=[0, -1])
    assert model.size_divisibility == 8 and model.num_layers == 3
    assert {k: (s.channels, s.stride) for k, s in model.output_shape().items()} == {"vit0": (32, 8), "vit2": (32, 8)}
    out = model(torch.randn(2, 3, *size))
    assert {k: tuple(v.shape) for k, v in out.items()} == {n: (2, 32, size[0] // 8, size[1] // 8)
                                                           for n in ("vit0", "vit2")}


def test_bad_inputs_and_settings_are_clear_errors():
    with pytest.raises(ValueError, match=r"40x36 is not a multiple of the patch size 8 \(MODEL.VIT.PATCH_SIZE\)"):
        _tiny()(torch.randn(1, 3, 40, 36))
    with pytest.raises(ValueError, match=r"MODEL.VIT.OUT_INDICES=\[3\]"):
        _tiny(OUT_INDICES=[3])
    with pytest.raises(ValueError, match="MODEL.VIT.IMG_SIZE=36 is not a multiple of MODEL.VIT.PATCH_SIZE=8"):
        _tiny(IMG_SIZE=36)
    with pytest.raises(ValueError, match="MODEL.VIT.CLS_EMB_START_LAYER=2.*last returned block \\(1"):
        _tiny(OUT_INDICES=[1], CLS_EMB_START_LAYER=2)


def _keys_cubic(t: float):
    """Keys' cubic convolution weights (a = -0.75, PyTorch's bicubic) of the taps at -1, 0, 1, 2 for offset t."""
    a = -0.75

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return [far(1 + t), near(t), near(1 - t), far(2 - t)]


def _bicubic_axis(values: np.ndarray, new: int) -> np.ndarray:
    """Resize axis 0 of ``values`` to ``new`` rows by hand: half-pixel centres, border taps clamped."""
    old = values.shape[0]
    out = []
    for i in range(new):
        src = (i + 0.5) * old / new - 0.5
        base = math.floor(src)
        weights = _keys_cubic(src - base)
        taps = [values[min(max(base + k, 0), old - 1)] for k in (-1, 0, 1, 2)]
        out.append(sum(w * v for w, v in zip(weights, taps)))
    return np.stack(out)


def test_position_embedding_resize_matches_a_hand_computed_bicubic():
    model = _tiny()
    pos = model.pos_embed.detach()  # [1, 1 + 4*4, 32]
    grid = pos[0, 1:].reshape(4, 4, 32).double().numpy()
    want = _bicubic_axis(_bicubic_axis(grid, 6).transpose(1, 0, 2), 8).transpose(1, 0, 2)  # rows 6, columns 8
    got = model.position_embedding((6, 8)).detach()
    assert got.shape == (1, 1 + 6 * 8, 32)
    assert torch.equal(got[0, 0], pos[0, 0])  # the class entry is kept
    np.testing.assert_allclose(got[0, 1:].reshape(6, 8, 32).numpy(), want, rtol=0, atol=1e-5)
    assert model.position_embedding((4, 4)) is model.pos_embed
    torch.testing.assert_close(resize_pos_embed(pos, (4, 4), (4, 4)), pos)


# -- weights --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_timm_state_dict_loads_by_name_and_gives_timms_features(tmp_path, fmt, caplog):
    source = _timm_tiny()
    path = tmp_path / f"vit_tiny.{fmt}"
    if fmt == "pth":
        torch.save(source.state_dict(), path)
    else:
        safetensors_torch.save_file(source.state_dict(), str(path))
    model = WithBackbone(_tiny(OUT_INDICES=[0, 1, 2])).eval()
    with caplog.at_level(logging.INFO):
        inc = Checkpointer(model).load(str(path))["incompatible"]
    assert "42 of its 44 keys name tensors of the backbone (ViT)" in caplog.text
    assert sorted(inc.unexpected) == ["head.bias", "head.weight"]
    assert sorted(inc.missing) == ["sem_seg_head.bias", "sem_seg_head.weight"] and not inc.shape_mismatch
    for k, v in source.state_dict().items():
        if not k.startswith("head."):
            assert torch.equal(model.state_dict()[f"backbone.{k}"], v), k
    # at 48x64 our position embedding is resized at run time as mmseg does (timm's dynamic size uses an
    # antialiased kernel), so there timm gets a 6x8 model holding that resized embedding
    wide = timm_vit.VisionTransformer(img_size=(48, 64), patch_size=8, embed_dim=32, depth=3, num_heads=2,
                                      num_classes=10).eval()
    wide.load_state_dict({**source.state_dict(), "pos_embed": resize_pos_embed(source.pos_embed, (6, 8), (4, 4))})
    for size, reference in [((32, 32), source), ((48, 64), wide)]:
        x = torch.randn(2, 3, *size)
        with torch.no_grad():
            ours = model.backbone(x)
            theirs = _timm_maps(reference, x, [0, 1, 2])
        for i in range(3):
            torch.testing.assert_close(ours[f"vit{i}"], theirs[i], rtol=1e-5, atol=1e-5)


def test_pretrained_pos_embed_of_another_grid_is_resized_on_load(tmp_path, caplog):
    source = _timm_tiny(img_size=24)  # a 3x3 grid, loaded into the 4x4 grid of IMG_SIZE 32
    torch.save(source.state_dict(), tmp_path / "vit_24.pth")
    model = WithBackbone(_tiny())
    with caplog.at_level(logging.INFO):
        inc = Checkpointer(model).load(str(tmp_path / "vit_24.pth"))["incompatible"]
    assert not inc.shape_mismatch
    assert "Resized the checkpoint's pos_embed from a 3x3 to a 4x4 grid" in caplog.text
    want = resize_pos_embed(source.pos_embed.detach(), (4, 4), (3, 3))
    assert torch.equal(model.backbone.pos_embed.detach(), want)
    assert torch.equal(want[:, 0], source.pos_embed.detach()[:, 0])


def test_whole_model_checkpoint_of_another_crop_has_its_pos_embed_resized(tmp_path):
    """A whole-model checkpoint (``backbone.*`` names) trained at 24 px loads into a 32 px model: its backbone
    part goes through the same adaptation."""
    trained = WithBackbone(_tiny(IMG_SIZE=24))
    torch.save({"model": trained.state_dict()}, tmp_path / "model_final.pth")
    model = WithBackbone(_tiny())
    inc = Checkpointer(model).load(str(tmp_path / "model_final.pth"))["incompatible"]
    assert not inc
    want = resize_pos_embed(trained.backbone.pos_embed.detach(), (4, 4), (3, 3))
    assert torch.equal(model.backbone.pos_embed.detach(), want)


def _jax_npz(model, path) -> None:
    """Write a timm ViT as Google's vit_jax .npz (the layout timm's ``load_pretrained`` reads)."""
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    C, H = model.embed_dim, model.blocks[0].attn.num_heads
    w = {"embedding/kernel": sd["patch_embed.proj.weight"].transpose(2, 3, 1, 0), "cls": sd["cls_token"],
         "embedding/bias": sd["patch_embed.proj.bias"], "Transformer/posembed_input/pos_embedding": sd["pos_embed"],
         "Transformer/encoder_norm/scale": sd["norm.weight"], "Transformer/encoder_norm/bias": sd["norm.bias"],
         "head/kernel": sd["head.weight"].T, "head/bias": sd["head.bias"]}
    for i in range(len(model.blocks)):
        b, t = f"Transformer/encoderblock_{i}/", f"blocks.{i}."
        attn = b + "MultiHeadDotProductAttention_1/"
        for name, qkv_w, qkv_b in zip(("query", "key", "value"), np.split(sd[t + "attn.qkv.weight"], 3),
                                      np.split(sd[t + "attn.qkv.bias"], 3)):
            w[attn + name + "/kernel"] = qkv_w.T.reshape(C, H, C // H)
            w[attn + name + "/bias"] = qkv_b.reshape(H, C // H)
        w[attn + "out/kernel"] = sd[t + "attn.proj.weight"].reshape(C, H, C // H).transpose(1, 2, 0)
        w[attn + "out/bias"] = sd[t + "attn.proj.bias"]
        for ln, norm in (("LayerNorm_0", "norm1"), ("LayerNorm_2", "norm2")):
            w[f"{b}{ln}/scale"], w[f"{b}{ln}/bias"] = sd[t + norm + ".weight"], sd[t + norm + ".bias"]
        for j in range(2):
            w[f"{b}MlpBlock_3/Dense_{j}/kernel"] = sd[f"{t}mlp.fc{j + 1}.weight"].T
            w[f"{b}MlpBlock_3/Dense_{j}/bias"] = sd[f"{t}mlp.fc{j + 1}.bias"]
    np.savez(path, **w)


def test_jax_npz_loads_through_timm_by_name(tmp_path):
    source = _timm_tiny()
    path = tmp_path / "Ti_8-tiny.npz"
    _jax_npz(source, path)
    model = WithBackbone(_tiny(OUT_INDICES=[0, 1, 2])).eval()
    inc = Checkpointer(model).load(str(path))["incompatible"]
    assert sorted(inc.unexpected) == ["head.bias", "head.weight"] and not inc.shape_mismatch
    assert sorted(inc.missing) == ["sem_seg_head.bias", "sem_seg_head.weight"]
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        ours, theirs = model.backbone(x), _timm_maps(source, x, [0, 1, 2])
    for i in range(3):
        torch.testing.assert_close(ours[f"vit{i}"], theirs[i], rtol=1e-5, atol=1e-5)


def test_npz_that_is_not_a_vit_is_a_clear_error(tmp_path):
    from mask2former_rankseg.engine import CheckpointError

    np.savez(tmp_path / "other.npz", weights=np.zeros(3))
    with pytest.raises(CheckpointError, match="not a jax ViT checkpoint"):
        Checkpointer(WithBackbone(_tiny())).load(str(tmp_path / "other.npz"))


# -- the class-embedding variant ---------------------------------------------------------------------------------
def test_class_embedding_joins_at_its_start_layer_and_is_returned():
    cfg = _cfg(**{**TINY, "OUT_INDICES": [0, 1, 2], "CLS_EMB_START_LAYER": 2})
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 5
    variant = build_backbone(cfg).eval()
    plain = _tiny(OUT_INDICES=[0, 1, 2])
    inc = plain.load_state_dict(variant.state_dict(), strict=False)
    assert inc.unexpected_keys == ["cls_emb"] and not inc.missing_keys
    assert variant.num_cls_emb == 5 and variant.cls_emb.shape == (1, 5, 32)
    assert variant.output_shape() == plain.output_shape()  # cls_emb is not a map
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        a, b = variant(x), plain(x)
    assert a["cls_emb"].shape == (2, 5, 32) and "cls_emb" not in b
    assert torch.equal(a["vit0"], b["vit0"]) and torch.equal(a["vit1"], b["vit1"])  # blocks before the start layer
    assert a["vit2"].shape == b["vit2"].shape and not torch.allclose(a["vit2"], b["vit2"], atol=1e-3)

    with pytest.raises(ValueError, match="MODEL.SEM_SEG_HEAD.NUM_CLASSES"):
        ViT(img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=2, cls_emb_start_layer=1, num_cls_emb=0)


# -- layer ids and sizes ------------------------------------------------------------------------------------------
def test_layer_ids_follow_beits_rule():
    cfg = _cfg(**{**TINY, "CLS_EMB_START_LAYER": 2})
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 5
    model = build_backbone(cfg)
    ids = {name: model.layer_id(name) for name, _ in model.named_parameters()}
    assert ids["cls_token"] == ids["pos_embed"] == ids["patch_embed.proj.weight"] == ids["patch_embed.proj.bias"] == 0
    assert ids["blocks.0.norm1.weight"] == 1 and ids["blocks.1.attn.qkv.weight"] == 2
    assert ids["blocks.2.mlp.fc2.bias"] == 3
    assert ids["norm.weight"] == ids["norm.bias"] == ids["cls_emb"] == 4 == model.num_layers + 1
    assert set(ids.values()) == {0, 1, 2, 3, 4}


@pytest.mark.parametrize("timm_name, vit", [
    ("vit_base_patch16_384", {}),
    ("vit_large_patch16_384", dict(IMG_SIZE=640, EMBED_DIM=1024, DEPTH=24, NUM_HEADS=16)),
])
def test_names_and_shapes_are_timms(timm_name, vit):
    """Every tensor of ViT-B/16 (512) and ViT-L/16 (640) is named and shaped as in timm's 384 px models, but for
    the position grid (24x24 there, resized on load); timm's classifier is the only extra."""
    with torch.device("meta"):
        theirs = {k: tuple(v.shape) for k, v in timm.create_model(timm_name, pretrained=False).state_dict().items()}
        ours = {k: tuple(v.shape) for k, v in build_backbone(_cfg(**vit)).state_dict().items()}
    assert set(theirs) - set(ours) == {"head.weight", "head.bias"} and set(ours) <= set(theirs)
    assert {k for k in ours if ours[k] != theirs[k]} == {"pos_embed"}
    assert theirs["pos_embed"][1] == 1 + 24 * 24 and ours["pos_embed"][1] == 1 + (vit.get("IMG_SIZE", 512) // 16) ** 2


def test_missing_timm_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` now raises ImportError
    with pytest.raises(ImportError, match=r"The ViT backbone needs timm, which is not installed: pip install timm"):
        _tiny()


# Parameter counts by hand (qkv bias, MLP ratio 4, final norm, position embedding for IMG_SIZE):
#   block      = norm1 2C + qkv (3C^2 + 3C) + proj (C^2 + C) + norm2 2C + fc1 (4C^2 + 4C) + fc2 (4C^2 + C) = 12C^2 + 13C
#   embeddings = patch conv (3 * 16 * 16 * C + C) + cls_token C + pos_embed (1 + g^2) C; final norm 2C
# ViT-B/16 at 512 (C = 768, 12 blocks, g = 32):
#   12 * 7,087,872 = 85,054,464; conv 590,592; cls 768; pos 1025 * 768 = 787,200; norm 1,536   -> 86,434,560
# ViT-L/16 at 640 (C = 1024, 24 blocks, g = 40):
#   24 * 12,596,224 = 302,309,376; conv 787,456; cls 1,024; pos 1601 * 1024 = 1,639,424; norm 2,048 -> 304,739,328
@pytest.mark.parametrize("variant, vit, count", [
    ("ViT-B/16", {}, 86_434_560),
    ("ViT-L/16", dict(IMG_SIZE=640, EMBED_DIM=1024, DEPTH=24, NUM_HEADS=16), 304_739_328),
])
def test_parameter_counts(variant, vit, count):
    with torch.device("meta"):  # shapes and counts without allocating the weights
        model = build_backbone(_cfg(**vit))
    assert sum(p.numel() for p in model.parameters()) == count
    assert list(model.output_shape()) == [f"vit{model.num_layers - 1}"]
    assert model.blocks[-1].drop_path1.drop_prob == pytest.approx(0.1)  # Segmenter's drop path, linear over depth
    assert model.blocks[0].drop_path1.__class__.__name__ == "Identity"

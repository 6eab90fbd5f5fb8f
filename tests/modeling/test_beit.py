"""BEiT: the four-scale pyramid (names, strides, channels), per-block relative position bias and layer scale,
timm's / official weights loaded by name with timm's block features, BEiT's load-time conversion (shared table
expanded, tables of another window interpolated), layer ids and the BEiT-L/16 parameter count."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from helpers import WithBackbone
from torch.nn import functional as F

from mask2former_rankseg.config import get_cfg
from mask2former_rankseg.engine import Checkpointer
from mask2former_rankseg.modeling.backbone import BEiT
from mask2former_rankseg.modeling.backbone.beit import geometric_offsets, resize_relative_position_table
from mask2former_rankseg.modeling.build import build_backbone

timm = pytest.importorskip("timm")
timm_beit = pytest.importorskip("timm.models.beit")

TINY = dict(IMG_SIZE=64, EMBED_DIM=32, DEPTH=4, NUM_HEADS=2, OUT_INDICES=[0, 1, 2, 3], FPN_NORM="BN",
            DROP_PATH_RATE=0.0)


def _cfg(**beit):
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.NAME = "build_beit_backbone"
    for k, v in beit.items():
        cfg.MODEL.BEIT[k] = v
    return cfg


def _tiny(**beit) -> BEiT:
    return build_backbone(_cfg(**{**TINY, **beit})).eval()


def _timm_tiny(img_size: int = 64, **kwargs):
    """timm's BEiT with TINY's hyper-parameters (relative position bias per block, layer scale), all random."""
    model = timm_beit.Beit(img_size=img_size, patch_size=16, embed_dim=32, depth=4, num_heads=2, num_classes=10,
                           use_abs_pos_emb=False, init_values=1e-6, **{"use_rel_pos_bias": True, **kwargs}).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def test_pyramid_names_strides_and_channels():
    model = _tiny()
    assert model.size_divisibility == 32 and model.num_layers == 4
    assert {k: (s.channels, s.stride) for k, s in model.output_shape().items()} == {
        "res2": (32, 4), "res3": (32, 8), "res4": (32, 16), "res5": (32, 32)}
    out = model(torch.randn(2, 3, 64, 64))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "res2": (2, 32, 16, 16), "res3": (2, 32, 8, 8), "res4": (2, 32, 4, 4), "res5": (2, 32, 2, 2)}


def test_relative_position_bias_and_layer_scale_per_block():
    model = _tiny(LAYER_SCALE_INIT=1e-6)
    params = dict(model.named_parameters())
    assert "pos_embed" not in params and not any(k.startswith("norm.") for k in params)
    for i, block in enumerate(model.blocks):
        # (2w - 1)^2 offsets of a 4x4 window + class-to-patch, patch-to-class, class-to-class; one column per head
        assert params[f"blocks.{i}.attn.relative_position_bias_table"].shape == (7 * 7 + 3, 2)
        assert torch.equal(block.gamma_1.detach(), torch.full((32,), 1e-6))
        assert torch.equal(block.gamma_2.detach(), torch.full((32,), 1e-6))
        assert params[f"blocks.{i}.attn.q_bias"].shape == params[f"blocks.{i}.attn.v_bias"].shape == (32,)
        assert block.attn.qkv.bias is None
    # the index is computed from the window, not stored
    assert not any("relative_position_index" in k for k in model.state_dict())
    assert model.blocks[0].attn.relative_position_index.shape == (17, 17)
    assert _tiny(LAYER_SCALE_INIT=0.0).blocks[0].gamma_1 is None  # 0: no layer scale


def test_input_of_another_size_is_a_clear_error():
    with pytest.raises(ValueError, match=r"input size 96x64.*learned for 64x64 inputs \(MODEL.BEIT.IMG_SIZE\)"):
        _tiny()(torch.randn(1, 3, 96, 64))
    with pytest.raises(ValueError, match="MODEL.BEIT.OUT_INDICES"):
        _tiny(OUT_INDICES=[0, 1, 2])
    with pytest.raises(ValueError, match="MODEL.BEIT.PATCH_SIZE=8"):
        _tiny(PATCH_SIZE=8)


def test_timm_weights_load_by_name_and_give_timms_block_features(tmp_path):
    source = _timm_tiny()
    torch.save(source.state_dict(), tmp_path / "beit_tiny.pth")
    model = WithBackbone(_tiny()).eval()
    inc = Checkpointer(model).load(str(tmp_path / "beit_tiny.pth"))["incompatible"]
    assert sorted(inc.unexpected) == ["fc_norm.bias", "fc_norm.weight", "head.bias", "head.weight"]
    assert not inc.shape_mismatch
    assert {k.split(".")[1] for k in inc.missing if k.startswith("backbone.")} == {"fpn1", "fpn2"}
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ours = model.backbone(x)
        maps = source.forward_intermediates(x, indices=[0, 1, 2, 3], output_fmt="NCHW", intermediates_only=True)
        fpn = model.backbone
        torch.testing.assert_close(ours["res2"], fpn.fpn1(maps[0]), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ours["res3"], fpn.fpn2(maps[1]), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ours["res4"], maps[2], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ours["res5"], F.max_pool2d(maps[3], 2), rtol=1e-5, atol=1e-5)


def test_official_layout_shared_table_and_another_window_are_converted_on_load(tmp_path, caplog):
    """An official pre-trained BEiT file (224 px: 14x14 windows; here 48 px: 3x3) holds one shared table
    ``rel_pos_bias.*`` with its persistent ``relative_position_index``: each block gets the table interpolated
    from 5x5 to 7x7 offsets, and the index is dropped."""
    source = _timm_tiny(img_size=48, use_rel_pos_bias=False, use_shared_rel_pos_bias=True)
    state = {**source.state_dict(), "rel_pos_bias.relative_position_index": torch.zeros(10, 10, dtype=torch.long)}
    torch.save({"model": state}, tmp_path / "beit_pt.pth")
    model = WithBackbone(_tiny())
    with caplog.at_level(logging.INFO):
        inc = Checkpointer(model).load(str(tmp_path / "beit_pt.pth"))["incompatible"]
    assert sorted(inc.unexpected) == ["fc_norm.bias", "fc_norm.weight", "head.bias", "head.weight"]
    assert not inc.shape_mismatch and not [k for k in inc.missing if ".blocks." in k]
    assert "shared relative position bias table into each of the 4 blocks" in caplog.text
    assert "from 5x5 to 7x7 offsets" in caplog.text
    want = resize_relative_position_table(source.rel_pos_bias.relative_position_bias_table.detach(), 7)
    for block in model.backbone.blocks:
        assert torch.equal(block.attn.relative_position_bias_table.detach(), want)


def test_geometric_offsets_are_beits():
    offsets = geometric_offsets(27, 79)  # BEiT-L: 14x14 pre-training windows into 40x40 (640 px)
    assert offsets.shape == (27,) and offsets[13] == 0 and np.array_equal(offsets[:13], -offsets[:13:-1])
    assert offsets[14] == 1 and abs(offsets[-1] - 39) < 1e-3  # first step 1, the last reaches dst // 2
    steps = np.diff(offsets[13:])
    assert np.all(np.diff(steps) > 0)  # widening steps: a geometric progression
    np.testing.assert_allclose(steps[1:] / steps[:-1], steps[1] / steps[0])


def test_table_interpolation_reproduces_a_cubic_and_keeps_the_extra_rows():
    """A bicubic interpolating spline reproduces cubic polynomials: a table sampled from one at BEiT's offsets
    comes out as the same polynomial at the integer offsets of the larger window (9x9 offsets, a 5x5 window,
    into 13x13, a 7x7 window: the outermost offset reaches 6, so no target lies outside the samples)."""

    def f(y, x):
        return 1 + 0.5 * x - 0.25 * y + 0.1 * x * y + 0.01 * x * x * y - 0.002 * y**3

    offsets = geometric_offsets(9, 13)
    assert abs(offsets[-1] - 6) < 1e-4
    y, x = np.meshgrid(offsets, offsets, indexing="ij")
    table = torch.tensor(np.stack([f(y, x).reshape(-1), -2 * f(y, x).reshape(-1)], axis=1), dtype=torch.float32)
    extra = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    resized = resize_relative_position_table(torch.cat([table, extra]), 13)
    assert resized.shape == (13 * 13 + 3, 2)
    assert torch.equal(resized[-3:], extra)
    t = np.arange(-6, 7, dtype=np.float64)
    ty, tx = np.meshgrid(t, t, indexing="ij")
    np.testing.assert_allclose(resized[:-3, 0].numpy(), f(ty, tx).reshape(-1), rtol=0, atol=1e-4)
    np.testing.assert_allclose(resized[:-3, 1].numpy(), -2 * f(ty, tx).reshape(-1), rtol=0, atol=1e-4)


def test_layer_ids_follow_beits_rule():
    model = _tiny()
    ids = {name: model.layer_id(name) for name, _ in model.named_parameters()}
    assert ids["cls_token"] == ids["patch_embed.proj.weight"] == 0
    assert ids["blocks.0.gamma_1"] == ids["blocks.0.attn.relative_position_bias_table"] == 1
    assert ids["blocks.3.mlp.fc2.weight"] == 4
    assert ids["fpn1.0.weight"] == ids["fpn1.1.weight"] == ids["fpn2.0.bias"] == 5 == model.num_layers + 1
    assert set(ids.values()) == {0, 1, 2, 3, 4, 5}


def test_names_and_shapes_are_timms_beit_large():
    """Every block tensor of BEiT-L/16 (640) is named and shaped as in timm's / the official 224 px BEiT-L, but for
    the relative position tables (27x27 offsets there, 79x79 here: interpolated on load); the pyramid is ours,
    timm's pooled-feature norm and classifier its own."""
    with torch.device("meta"):
        theirs = {k: tuple(v.shape) for k, v in timm.create_model("beit_large_patch16_224").state_dict().items()}
        ours = {k: tuple(v.shape) for k, v in build_backbone(_cfg()).state_dict().items()}
    assert set(theirs) - set(ours) == {"fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"}
    assert {k.split(".")[0] for k in set(ours) - set(theirs)} == {"fpn1", "fpn2"}
    differ = {k for k in set(ours) & set(theirs) if ours[k] != theirs[k]}
    assert differ == {f"blocks.{i}.attn.relative_position_bias_table" for i in range(24)}
    assert theirs["blocks.0.attn.relative_position_bias_table"] == (27 * 27 + 3, 16)
    assert ours["blocks.0.attn.relative_position_bias_table"] == (79 * 79 + 3, 16)


# BEiT-L/16 at 640 with the pyramid, by hand (C = 1024, 16 heads, 40x40 window, MLP ratio 4, layer scale):
#   block   = norm1 2C + qkv 3C^2 (no bias) + q_bias C + v_bias C + table ((2*40 - 1)^2 + 3) * 16 = 99,904
#             + proj (C^2 + C) + norm2 2C + fc1 (4C^2 + 4C) + fc2 (4C^2 + C) + gamma_1, gamma_2 2C
#           = 12C^2 + 14C + 99,904 = 12,697,152;  24 blocks = 304,731,648
#   embeddings: patch conv 3 * 16 * 16 * C + C = 787,456; cls_token 1,024
#   fpn1 = ConvTranspose (4C^2 + C) + BN 2C + ConvTranspose (4C^2 + C) = 8,392,704; fpn2 = 4,195,328
#   total                                                                                     = 318,108,160
def test_beit_large_parameter_count_and_defaults():
    with torch.device("meta"):  # shapes and counts without allocating the weights
        model = build_backbone(_cfg())
    assert sum(p.numel() for p in model.parameters()) == 318_108_160
    assert model.out_indices == [7, 11, 15, 23] and model.grid == 40 and model.num_layers == 24
    assert model.blocks[-1].drop_path1.drop_prob == pytest.approx(0.2)
    assert type(model.fpn1[1]).__name__ == "SyncBatchNorm2d"

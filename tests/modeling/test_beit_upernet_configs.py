"""configs/upernet/ BEiT-L files: every one loads and builds (on the meta device); parameter counts, with the heads'
derived by hand from mmseg's UPerNet structure; the optimiser groups against BEiT's LayerDecayOptimizerConstructor
(layer-wise lr, and no weight decay on 1-D parameters and ".bias")."""

from __future__ import annotations

import pytest
from helpers import CONFIGS, build_on_meta, count_parameters

from mask2former_rankseg.engine.optim import get_param_groups

FOLDER = CONFIGS / "upernet"
PARAMETERS = {
    "upernet_beit_large_24_640x640_160k_ade20k.yaml": 441_271_084,
    "upernet_beit_large_24_640x640_160k_ade20k-rankseg.yaml": 455_228_454,
    "upernet_beit_large_24_640x640_160k_coco-stuff10k.yaml": 441_298_006,
    "upernet_beit_large_24_640x640_160k_coco-stuff10k-rankseg.yaml": 455_298_405,
}
BACKBONE = 318_108_160  # BEiT-L/16 at 640 with its pyramid (tests/modeling/test_beit.py derives it)
CLASSES = {"ade20k": 150, "coco-stuff10k": 171}


def _build(name: str):
    return build_on_meta(FOLDER / name)


def test_every_config_is_listed():
    assert sorted(p.name for p in FOLDER.glob("upernet_beit_*.yaml")) == sorted(PARAMETERS)
    # the Swin files are listed by test_upernet_configs.py; nothing else is in the folder
    assert all(p.name.startswith(("upernet_swin_", "upernet_beit_")) for p in FOLDER.glob("upernet_*.yaml"))


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_config_builds_with_its_parametercount_parameters(name):
    cfg, model = _build(name)
    assert count_parameters(model) == PARAMETERS[name]
    assert count_parameters(model.backbone) == BACKBONE
    k = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
    assert k == CLASSES[name.split("_160k_")[1].removesuffix(".yaml").removesuffix("-rankseg")]
    s = cfg.SOLVER
    assert (s.OPTIMIZER, s.BASE_LR, s.WEIGHT_DECAY, s.IMS_PER_BATCH, s.MAX_ITER) == ("ADAMW", 2e-5, 0.05, 16, 160_000)
    assert (s.WARMUP_METHOD, s.WARMUP_ITERS, s.WARMUP_FACTOR, s.POLY_LR_POWER, s.BASE_LR_END) == \
        ("linear", 3000, 1e-6, 1.0, 0.0)
    assert s.LAYER_DECAY_RATE == 0.95 and s.BACKBONE_MULTIPLIER == 1.0 and s.AMP.ENABLED
    assert tuple(cfg.INPUT.CROP.SIZE) == (640, 640) and tuple(cfg.INPUT.RESIZE.SCALE) == (2560, 640)
    head = cfg.MODEL.SEM_SEG_HEAD
    assert head.TEST_MODE == "slide" and tuple(head.TEST_CROP_SIZE) == (640, 640)
    assert tuple(head.TEST_STRIDE) == (426, 426)
    assert (cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST) == (640, 2560)
    assert list(cfg.MODEL.PIXEL_MEAN) == [123.675, 116.280, 103.530]
    rs = cfg.MODEL.RANKSEG
    assert name.endswith("-rankseg.yaml") == rs.FLAG and not rs.USE_GT
    if rs.FLAG:
        assert (rs.TOPK, rs.LOSS_WEIGHT, rs.HIDDEN_DIM, rs.SHARE_EMBEDDING, rs.POOL_SIZE, rs.IN_FEATURE) == \
            (50, 5, 1024, False, 0, "res5")
        assert 0 < rs.TOPK < k
        block = model.ml_head.block
        assert block.attn.heads == 16 and block.mlp.fc1.out_features == 4096  # upernet_beit_mlseg.py's n_heads, d_ff


def test_heads_counted_by_hand():
    """ADE20K (K = 150); BEiT-L's res2..res5 have 1024 channels each; UPerHead width C = 1024; SyncBN: 2 per channel,
    convolutions before it without bias. RankSeg's multi-label head: hidden 1024, not shared."""
    _, base = _build("upernet_beit_large_24_640x640_160k_ade20k.yaml")
    _, ranked = _build("upernet_beit_large_24_640x640_160k_ade20k-rankseg.yaml")
    k, c, top = 150, 1024, 1024
    ppm = 4 * (top * c + 2 * c)
    bottleneck = 9 * (top + 4 * c) * c + 2 * c
    laterals = 3 * top * c + 3 * 2 * c
    fpn = 3 * (9 * c * c + 2 * c)
    fuse = 9 * 4 * c * c + 2 * c
    body = ppm + bottleneck + laterals + fpn + fuse
    assert (ppm, bottleneck, laterals, fpn, fuse) == (4_202_496, 47_187_968, 3_151_872, 28_317_696, 37_750_784)
    assert count_parameters(base.sem_seg_head) == body + (c * k + k) == 120_764_566
    assert count_parameters(base.aux_head) == (9 * 1024 * 256 + 2 * 256) + (256 * k + k) == 2_398_358  # FCNHead on res4
    assert count_parameters(ranked.sem_seg_head) == body + (k * c + k + 2 * 50)
    h = 1024  # depthwise-separable projection, one block (16 heads, FFN 4h), LayerNorm, read-out, own class tokens
    block = 2 * (2 * h) + (h * 3 * h + 3 * h) + (h * h + h) + (h * 4 * h + 4 * h) + (4 * h * h + h)
    by_hand = (top + top) + (top * h + h) + block + 2 * h + (k * h + k) + k * h
    assert count_parameters(ranked.ml_head) == by_hand == 13_957_270
    assert ranked.ml_head.pooling is None


def test_optimiser_groups_are_beits():
    """BEiT's LayerDecayOptimizerConstructor (num_layers 24, rate 0.95): lr x 0.95 ** (25 - layer), layer 0 for
    cls_token / patch_embed, i + 1 for blocks.{i}, 25 for the rest; weight decay 0 for 1-D parameters and names
    ending in ".bias" (its pos_embed / cls_token names never match full names: cls_token decays), 0.05 otherwise."""
    cfg, model = _build("upernet_beit_large_24_640x640_160k_ade20k-rankseg.yaml")
    s = cfg.SOLVER
    groups = get_param_groups(model, base_lr=s.BASE_LR, weight_decay=s.WEIGHT_DECAY,
                              weight_decay_norm=s.WEIGHT_DECAY_NORM, weight_decay_embed=s.WEIGHT_DECAY_EMBED,
                              backbone_multiplier=s.BACKBONE_MULTIPLIER, mlhead_multiplier=s.MLHEAD_MULTIPLIER,
                              param_rules=s.PARAM_RULES, layer_decay_rate=s.LAYER_DECAY_RATE)
    params = dict(model.named_parameters())
    assert len(groups) == len(params)

    def layer(name: str) -> int:
        if name in ("backbone.cls_token", "backbone.mask_token", "backbone.pos_embed") or \
                name.startswith("backbone.patch_embed"):
            return 0
        if name.startswith("backbone.blocks."):
            return int(name.split(".")[2]) + 1
        return 25

    for g in groups:
        name = g["name"]
        assert g["lr"] == pytest.approx(2e-5 * 0.95 ** (25 - layer(name)), rel=1e-12), name
        beit_decay = 0.0 if params[name].ndim == 1 or name.endswith(".bias") else 0.05
        assert g["weight_decay"] == beit_decay, name
    by_name = {g["name"]: g for g in groups}
    assert by_name["backbone.patch_embed.proj.weight"]["lr"] == pytest.approx(2e-5 * 0.95 ** 25)
    assert by_name["backbone.blocks.23.mlp.fc1.weight"]["lr"] == pytest.approx(2e-5 * 0.95)
    assert by_name["backbone.blocks.0.attn.qkv.weight"]["lr"] == pytest.approx(2e-5 * 0.95 ** 24)
    for name in ("backbone.fpn1.0.weight", "sem_seg_head.fpn_bottleneck.conv.weight", "aux_head.conv_seg.weight",
                 "ml_head.fc.W", "sem_seg_head.predictor.cls_emb"):
        assert by_name[name]["lr"] == 2e-5, name
    for name in ("backbone.blocks.3.attn.relative_position_bias_table", "backbone.cls_token", "ml_head.fc.b",
                 "sem_seg_head.predictor.cls_bias_emb", "ml_head.cls_emb"):
        assert by_name[name]["weight_decay"] == 0.05, name
    for name in ("backbone.blocks.3.attn.q_bias", "backbone.blocks.3.gamma_1", "backbone.blocks.3.norm2.weight",
                 "backbone.fpn1.1.weight", "sem_seg_head.fpn_bottleneck.bn.weight", "ml_head.norm.weight"):
        assert by_name[name]["weight_decay"] == 0.0, name

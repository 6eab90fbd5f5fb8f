"""configs/upernet/ Swin-B files (the BEiT-L ones: test_beit_upernet_configs.py): every file loads and builds (on the
meta device); parameter counts, with the heads' derived by hand from mmseg's UPerNet structure; the optimiser groups
the files give (mmseg's custom_keys)."""

from __future__ import annotations

import pytest
from helpers import CONFIGS, build_on_meta, count_parameters

from mask2former_rankseg.engine.optim import get_param_groups

PARAMETERS = {
    "upernet_swin_base_IN21k_384_512x512_160k_ade20k.yaml": 121_415_076,
    "upernet_swin_base_IN21k_384_512x512_160k_ade20k-rankseg.yaml": 125_172_382,
    "upernet_swin_base_IN21k_384_512x512_160k_ade20k-gt.yaml": 125_172_382,
    "upernet_swin_base_IN21k_384_512x512_40k_coco-stuff10k.yaml": 121_431_246,
    "upernet_swin_base_IN21k_384_512x512_40k_coco-stuff10k-rankseg.yaml": 125_199_325,
    "upernet_swin_base_IN21k_384_512x512_40k_coco-stuff10k-gt.yaml": 125_199_325,
    "upernet_swin_base_IN21k_384_512x512_160k_coco-lvis.yaml": 122_288_256,
    "upernet_swin_base_IN21k_384_512x512_160k_coco-lvis-rankseg.yaml": 126_627_304,
    "upernet_swin_base_IN21k_384_512x512_160k_coco-lvis-gt.yaml": 126_627_304,
}
BACKBONE = 86_880_376  # Swin-B, window 12 (tests/modeling/test_swin.py derives it)
ITERATIONS = {"ade20k": 160_000, "coco-stuff10k": 40_000, "coco-lvis": 160_000}


def _build(name: str):
    return build_on_meta(CONFIGS / "upernet" / name)


def test_every_config_is_listed():
    assert sorted(p.name for p in (CONFIGS / "upernet").glob("upernet_swin_*.yaml")) == sorted(PARAMETERS)


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_config_builds_with_its_parametercount_parameters(name):
    cfg, model = _build(name)
    assert count_parameters(model) == PARAMETERS[name]
    assert count_parameters(model.backbone) == BACKBONE
    s = cfg.SOLVER
    assert (s.OPTIMIZER, s.BASE_LR, s.WEIGHT_DECAY, s.IMS_PER_BATCH) == ("ADAMW", 6e-5, 0.01, 16)
    assert (s.WARMUP_ITERS, s.WARMUP_FACTOR, s.POLY_LR_POWER, s.BASE_LR_END) == (1500, 1e-6, 1.0, 0.0)
    iterations = next(v for dataset, v in ITERATIONS.items() if f"_{dataset}" in name)
    assert iterations == s.MAX_ITER
    assert tuple(cfg.INPUT.CROP.SIZE) == (512, 512) and cfg.INPUT.RESIZE.TYPE == "ratio_range"
    k = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
    if cfg.MODEL.RANKSEG.FLAG:
        rs = cfg.MODEL.RANKSEG
        assert (rs.TOPK, rs.LOSS_WEIGHT, rs.HIDDEN_DIM, rs.POOL_SIZE, rs.IN_FEATURE) == (50, 10, 512, 0, "res5")
        assert k > rs.TOPK
        assert name.endswith("-gt.yaml") == rs.USE_GT


def test_heads_counted_by_hand():
    """ADE20K (K = 150); Swin-B's res2..res5 have 128, 256, 512, 1024 channels; width C = 512; SyncBN: 2 per
    channel, convolutions before it without bias."""
    _, base = _build("upernet_swin_base_IN21k_384_512x512_160k_ade20k.yaml")
    _, ranked = _build("upernet_swin_base_IN21k_384_512x512_160k_ade20k-rankseg.yaml")
    k, c, top = 150, 512, 1024
    ppm = 4 * (top * c + 2 * c)  # 1x1 per pool scale 1, 2, 3, 6
    bottleneck = 9 * (top + 4 * c) * c + 2 * c
    laterals = (128 + 256 + 512) * c + 3 * 2 * c
    fpn = 3 * (9 * c * c + 2 * c)
    fuse = 9 * 4 * c * c + 2 * c
    body = ppm + bottleneck + laterals + fpn + fuse
    assert (ppm, bottleneck, laterals, fpn, fuse) == (2_101_248, 14_156_800, 461_824, 7_080_960, 9_438_208)
    assert count_parameters(base.sem_seg_head) == body + (c * k + k) == 33_315_990
    assert count_parameters(base.aux_head) == (9 * 512 * 256 + 2 * 256) + (256 * k + k) == 1_218_710  # FCNHead on res4
    # RankSeg: the classifier is the class embedding, its bias and LayerNorm(50); the multi-label head reads res5
    # (1024 channels): a depthwise-separable projection to 512, one block (FFN 2048), a LayerNorm and the group-wise
    # read-out (class tokens shared with the classifier)
    assert count_parameters(ranked.sem_seg_head) == body + (k * c + k + 2 * 50)
    block = 2 * (2 * c) + (c * 3 * c + 3 * c) + (c * c + c) + (c * 2048 + 2048) + (2048 * c + c)
    assert count_parameters(ranked.ml_head) == (top + top) + (top * c + c) + block + 2 * c + (k * c + k) == 3_757_206
    assert ranked.ml_head.pooling is None


def test_optimiser_groups_are_mmsegs():
    """mmseg's UPerNet-Swin custom_keys: no decay on absolute_pos_embed, relative_position_bias_table and every
    parameter named "norm" (the backbone's LayerNorms, RankSeg's LayerNorms); 0.01 elsewhere, the heads' batch
    norms ("bn") included; lr 6e-5 everywhere."""
    cfg, model = _build("upernet_swin_base_IN21k_384_512x512_160k_ade20k-rankseg.yaml")
    s = cfg.SOLVER
    groups = get_param_groups(model, base_lr=s.BASE_LR, weight_decay=s.WEIGHT_DECAY,
                              weight_decay_norm=s.WEIGHT_DECAY_NORM, weight_decay_embed=s.WEIGHT_DECAY_EMBED,
                              backbone_multiplier=s.BACKBONE_MULTIPLIER, mlhead_multiplier=s.MLHEAD_MULTIPLIER,
                              param_rules=s.PARAM_RULES, layer_decay_rate=s.LAYER_DECAY_RATE)
    decay = {g["name"]: g["weight_decay"] for g in groups}
    assert {g["lr"] for g in groups} == {6e-5}
    for name in ("backbone.layers.2.blocks.5.attn.relative_position_bias_table", "backbone.patch_embed.norm.weight",
                 "backbone.layers.0.blocks.0.norm1.bias", "backbone.norm3.weight", "sem_seg_head.predictor.norm.weight",
                 "ml_head.block.norm2.weight", "ml_head.norm.bias"):
        assert decay[name] == 0.0, name
    for name in ("backbone.layers.2.blocks.5.attn.qkv.weight", "backbone.layers.1.downsample.reduction.weight",
                 "sem_seg_head.fpn_bottleneck.bn.weight", "sem_seg_head.psp_modules.0.1.conv.weight",
                 "sem_seg_head.predictor.cls_emb", "aux_head.conv_seg.bias", "ml_head.fc.W"):
        assert decay[name] == 0.01, name
    no_decay = sum(1 for v in decay.values() if v == 0.0)
    # Swin-B: 24 blocks x (2 norms x 2 + 1 table) + patch norm 2 + 3 merging norms x 2 + 4 stage norms x 2;
    # RankSeg: the classifier's LayerNorm(50) 2, the multi-label block's 2 norms x 2 and its final norm 2
    assert no_decay == 24 * 5 + 2 + 6 + 8 + 2 + 4 + 2

"""configs/segmenter/: every file loads and builds (on the meta device); parameter counts, with the heads' derived
by hand from Segmenter's structure; each row's upstream settings (RankSeg's mmseg/configs/segmenter/ files); the
optimiser groups against mmcv's custom_keys applied to upstream's parameter names."""

from __future__ import annotations

import re

import pytest
import torch
from helpers import CONFIGS, build_on_meta, count_parameters

from mask2former_rankseg.config import get_cfg
from mask2former_rankseg.data import DatasetCatalog, MetadataCatalog
from mask2former_rankseg.engine.optim import get_param_groups
from mask2former_rankseg.modeling import build_model

FOLDER = CONFIGS / "segmenter"
PARAMETERS = {
    "segmenter_vit-b16_512x512_40k_coco-stuff10k.yaml": 102_513_750,
    "segmenter_vit-b16_512x512_40k_coco-stuff10k-rankseg.yaml": 109_734_415,
    "segmenter_vit-b16_512x512_40k_coco-stuff10k-gt.yaml": 109_734_415,
    "segmenter_vit-b16_512x512_40k_coco-stuff10k-backbone-cls-emb.yaml": 102_513_750,
    "segmenter_vit-b16_512x512_40k_coco-stuff10k-backbone-cls-emb-rankseg.yaml": 109_734_415,
    "segmenter_vit-b16_512x512_80k_coco-stuff10k.yaml": 102_513_750,
    "segmenter_vit-b16_512x512_80k_coco-stuff10k-rankseg.yaml": 109_734_415,
    "segmenter_vit-l16_640x640_40k_coco-stuff10k.yaml": 333_256_022,
    "segmenter_vit-l16_640x640_40k_coco-stuff10k-rankseg.yaml": 346_029_327,
    "segmenter_vit-b16_480x480_80k_pascal-context60.yaml": 102_428_280,
    "segmenter_vit-b16_480x480_80k_pascal-context60-rankseg.yaml": 109_563_758,
    "segmenter_vit-b16_480x480_80k_pascal-context60-gt.yaml": 109_563_758,
    "segmenter_vit-b16_512x512_160k_ade20k.yaml": 102_497_580,
    "segmenter_vit-b16_512x512_160k_ade20k-rankseg.yaml": 109_702_138,
    "segmenter_vit-b16_512x512_160k_ade20k-gt.yaml": 109_702_138,
    "segmenter_vit-b16_512x512_160k_ade20k-backbone-cls-emb.yaml": 102_497_580,
    "segmenter_vit-b16_512x512_160k_ade20k-backbone-cls-emb-rankseg.yaml": 109_702_138,
    "segmenter_vit-l16_640x640_160k_ade20k.yaml": 333_234_476,
    "segmenter_vit-l16_640x640_160k_ade20k-rankseg.yaml": 345_986_298,
    "segmenter_vit-b16_512x512_160k_ade20k-full.yaml": 103_034_270,
    "segmenter_vit-b16_512x512_160k_ade20k-full-rankseg.yaml": 110_773_427,
    "segmenter_vit-b16_512x512_160k_ade20k-full-gt.yaml": 110_773_427,
    "segmenter_vit-b16_512x512_320k_coco-lvis.yaml": 103_370_760,
    "segmenter_vit-b16_512x512_320k_coco-lvis-rankseg.yaml": 111_445_096,
    "segmenter_vit-b16_512x512_320k_coco-lvis-gt.yaml": 111_445_096,
    "segmenter_vit-b16_640x640_320k_coco-lvis.yaml": 103_813_128,
    "segmenter_vit-b16_640x640_320k_coco-lvis-rankseg.yaml": 111_887_464,
}
# ViT (tests/modeling/test_vit.py derives them): B/16 at 512, B/16 at 640 (pos_embed 1 + 40 * 40 rows), L/16 at 640
BACKBONES = {("vit-b16", 512): 86_434_560, ("vit-b16", 480): 86_434_560, ("vit-b16", 640): 86_876_928,
             ("vit-l16", 640): 304_739_328}
# dataset: (K, ignore label, ImageNet mean/std (else 127.5), training set, test set)
DATASETS = {
    "coco-stuff10k": (171, 255, True, "coco_stuff_10k_train_sem_seg", "coco_stuff_10k_test_sem_seg"),
    "pascal-context60": (60, 255, False, "pascal_context_60_sem_seg_train", "pascal_context_60_sem_seg_val"),
    "ade20k": (150, 255, False, "ade20k_sem_seg_train", "ade20k_sem_seg_val"),
    "ade20k-full": (847, 65535, True, "ade20k_full_sem_seg_train", "ade20k_full_sem_seg_val"),
    "coco-lvis": (1284, 65535, True, "coco_lvis_sem_seg_train", "coco_lvis_sem_seg_val"),
}
# upstream's RankSeg files, per row: (topk_cls, img_loss_weight, weight_decay); the last three rows have no upstream
# file (assumed: ADE20K's)
RANKSEG = {
    "segmenter_vit-b16_512x512_40k_coco-stuff10k": (50, 10, 0.0),
    "segmenter_vit-b16_512x512_80k_coco-stuff10k": (50, 5, 0.0),
    "segmenter_vit-l16_640x640_40k_coco-stuff10k": (50, 10, 0.0),
    "segmenter_vit-b16_480x480_80k_pascal-context60": (25, 5, 1e-6),
    "segmenter_vit-b16_512x512_160k_ade20k": (50, 10, 1e-6),
    "segmenter_vit-l16_640x640_160k_ade20k": (50, 10, 1e-6),
    "segmenter_vit-b16_512x512_160k_ade20k-full": (50, 10, 1e-6),
    "segmenter_vit-b16_512x512_320k_coco-lvis": (50, 10, 1e-6),
    "segmenter_vit-b16_640x640_320k_coco-lvis": (50, 10, 1e-6),
}
VARIANTS = ("-backbone-cls-emb-rankseg", "-backbone-cls-emb", "-rankseg", "-gt")
IMAGENET = ([123.675, 116.280, 103.530], [58.395, 57.120, 57.375])


def _build(name: str):
    return build_on_meta(FOLDER / name)


def _row(name: str) -> str:
    stem = name[: -len(".yaml")]
    for suffix in VARIANTS:
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def _groups(cfg, model):
    s = cfg.SOLVER
    return get_param_groups(model, base_lr=s.BASE_LR, weight_decay=s.WEIGHT_DECAY,
                            weight_decay_norm=s.WEIGHT_DECAY_NORM, weight_decay_embed=s.WEIGHT_DECAY_EMBED,
                            backbone_multiplier=s.BACKBONE_MULTIPLIER, mlhead_multiplier=s.MLHEAD_MULTIPLIER,
                            param_rules=s.PARAM_RULES, layer_decay_rate=s.LAYER_DECAY_RATE)


def _upstream_name(name: str) -> str:
    """Our parameter name -> upstream's (mmseg's ViT names its LayerNorms ln1 / ln2, the final one ln1)."""
    name = re.sub(r"^sem_seg_head\.", "decode_head.", name)
    if name.startswith("backbone.blocks."):
        name = name.replace(".norm1.", ".ln1.").replace(".norm2.", ".ln2.")
    return re.sub(r"^backbone\.norm\.", "backbone.ln1.", name)


def _mmcv_decay(name: str, base: float, keys: dict) -> float:
    """mmcv's DefaultOptimizerConstructor with custom_keys: the longest key contained in the name decides."""
    for key in sorted(sorted(keys), key=len, reverse=True):
        if key in name:
            return base * keys[key]
    return base


def test_every_config_is_listed():
    assert sorted(p.name for p in FOLDER.glob("segmenter_*.yaml")) == sorted(PARAMETERS)
    assert sorted(p.name for p in FOLDER.glob("Base-*.yaml")) == ["Base-Segmenter-ViT-B16.yaml",
                                                                  "Base-Segmenter-ViT-L16.yaml"]
    assert {_row(n) for n in PARAMETERS} == set(RANKSEG)  # every row has its baseline and -rankseg file
    assert all(n.replace(".yaml", "-rankseg.yaml") in PARAMETERS for n in PARAMETERS if _row(n) + ".yaml" == n)


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_config_builds_with_its_parametercount_parameters(name):
    cfg, model = _build(name)
    assert count_parameters(model) == PARAMETERS[name]
    backbone, crop, iterations, dataset = re.fullmatch(r"segmenter_(vit-[bl]16)_(\d+)x\2_(\d+)k_(.+)",
                                                       _row(name)).groups()
    crop, iterations = int(crop), int(iterations) * 1000
    k, ignore, imagenet, train, test = DATASETS[dataset]
    cls_emb = "-backbone-cls-emb" in name
    class_tokens = k * cfg.MODEL.VIT.EMBED_DIM if cls_emb else 0
    assert count_parameters(model.backbone) == BACKBONES[backbone, crop] + class_tokens
    assert model.aux_head is None and model.ml_head is None

    head = cfg.MODEL.SEM_SEG_HEAD
    assert (k, ignore) == (head.NUM_CLASSES, head.IGNORE_VALUE)
    assert ((train,), (test,)) == (cfg.DATASETS.TRAIN, cfg.DATASETS.TEST)
    for dataset_name in (train, test):
        assert dataset_name in DatasetCatalog
        meta = MetadataCatalog.get(dataset_name)
        assert len(meta.stuff_classes) == k and meta.ignore_label == ignore
    mean_std = IMAGENET if imagenet else ([127.5] * 3, [127.5] * 3)
    assert (list(cfg.MODEL.PIXEL_MEAN), list(cfg.MODEL.PIXEL_STD)) == mean_std

    s = cfg.SOLVER
    assert ("SGD", 1e-3, 0.9, 8, iterations) == (s.OPTIMIZER, s.BASE_LR, s.MOMENTUM, s.IMS_PER_BATCH, s.MAX_ITER)
    assert (s.LR_SCHEDULER_NAME, s.POLY_LR_POWER, s.BASE_LR_END, s.WARMUP_ITERS) == ("WarmupPolyLR", 0.9, 1e-5, 0)
    assert s.BACKBONE_MULTIPLIER == s.MLHEAD_MULTIPLIER == 1.0 and s.LAYER_DECAY_RATE == 1.0
    assert s.WEIGHT_DECAY_NORM == s.WEIGHT_DECAY_EMBED == s.WEIGHT_DECAY  # the built-in rules neutral

    # mmseg's pipeline at the row's crop; slide testing with windows of the crop every crop (Pascal: 480 of 520)
    assert tuple(cfg.INPUT.CROP.SIZE) == (crop, crop) and crop == cfg.INPUT.SIZE_DIVISIBILITY
    assert cfg.INPUT.RESIZE.TYPE == "ratio_range" and cfg.INPUT.AUGMENTATION_STYLE == "mmseg"
    short = 520 if dataset == "pascal-context60" else crop
    assert tuple(cfg.INPUT.RESIZE.SCALE) == (8 * 520 if short == 520 else 4 * crop, short)
    assert (short, tuple(cfg.INPUT.RESIZE.SCALE)[0]) == (cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)
    assert head.TEST_MODE == "slide" and tuple(head.TEST_CROP_SIZE) == tuple(head.TEST_STRIDE) == (crop, crop)
    # the position embedding is stored for 512 on Pascal-Context too, as upstream's file keeps the base's img_size
    assert (512 if crop == 480 else crop) == cfg.MODEL.VIT.IMG_SIZE
    assert f"./output/{name[:-len('.yaml')]}" == cfg.OUTPUT_DIR


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_variants_set_what_they_should(name):
    cfg = get_cfg()
    cfg.merge_from_file(str(FOLDER / name))
    rs, seg, vit = cfg.MODEL.RANKSEG, cfg.MODEL.SEGMENTER, cfg.MODEL.VIT
    topk, weight, decay = RANKSEG[_row(name)]
    ranked = name.endswith(("-rankseg.yaml", "-gt.yaml"))
    assert ranked == rs.FLAG and name.endswith("-gt.yaml") == rs.USE_GT
    assert (3 if ranked else 2) == seg.N_LAYERS and seg.DROPOUT == 0.1 and seg.DROP_PATH_RATE == 0.0
    assert seg.D_MODEL == vit.EMBED_DIM and seg.N_HEADS == vit.EMBED_DIM // 64 and seg.D_FF == 4 * vit.EMBED_DIM
    if ranked:
        assert (topk, weight, 8) == (rs.TOPK, rs.LOSS_WEIGHT, rs.POOL_SIZE)
        assert 0 < rs.TOPK < cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
        # upstream's COCO-Stuff-10k files give no loss_img: their head's default BCE; the others the asymmetric loss
        assert ("bce" if "coco-stuff10k" in name else "asymmetric") == rs.ML_LOSS
    # upstream's weight decay: 0 for every baseline (and its GT file on Pascal-Context), the row's for RankSeg
    pascal_gt = name == "segmenter_vit-b16_480x480_80k_pascal-context60-gt.yaml"
    assert (decay if ranked and not pascal_gt else 0.0) == cfg.SOLVER.WEIGHT_DECAY
    cls_emb = "-backbone-cls-emb" in name
    assert ((11, True) if cls_emb else (-1, False)) == (vit.CLS_EMB_START_LAYER, seg.CLS_EMB_FROM_BACKBONE)
    assert vit.DROP_PATH_RATE == 0.1 and vit.FINAL_NORM and list(vit.OUT_INDICES) == [-1]
    assert list(cfg.MODEL.SEM_SEG_HEAD.IN_FEATURES) == [f"vit{vit.DEPTH - 1}"]


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_optimiser_groups_are_upstreams(name):
    """Each parameter's weight decay is what mmcv's custom_keys give upstream's name (pos_embed, cls_token, norm at
    0; with RankSeg's decay, decode_head.blocks.0. and decode_head.ml_fc at x 100), every lr the base lr."""
    cfg, model = _build(name)
    decay = cfg.SOLVER.WEIGHT_DECAY
    keys = {"pos_embed": 0.0, "cls_token": 0.0, "norm": 0.0}
    if cfg.MODEL.RANKSEG.FLAG and decay:
        keys.update({"decode_head.blocks.0.": 100.0, "decode_head.ml_fc": 100.0})
    groups = _groups(cfg, model)
    assert len(groups) == len(list(model.parameters()))
    assert {g["lr"] for g in groups} == {1e-3}
    for g in groups:
        assert g["weight_decay"] == pytest.approx(_mmcv_decay(_upstream_name(g["name"]), decay, keys)), g["name"]


def test_optimiser_groups_by_name():
    """ADE20K + RankSeg (weight decay 1e-6): the embeddings and the head's norms at 0, the backbone's LayerNorms at
    the base decay (upstream's ln1 / ln2 escape its "norm" key), the ranking block (its norms too) and ml_fc x 100."""
    cfg, model = _build("segmenter_vit-b16_512x512_160k_ade20k-rankseg.yaml")
    decay = {g["name"]: g["weight_decay"] for g in _groups(cfg, model)}
    for name in ("backbone.pos_embed", "backbone.cls_token", "sem_seg_head.decoder_norm.weight",
                 "sem_seg_head.decoder_norm2.bias", "sem_seg_head.mask_norm.weight",
                 "sem_seg_head.blocks.1.norm1.weight", "sem_seg_head.blocks.2.norm2.bias"):
        assert decay[name] == 0.0, name
    for name in ("backbone.blocks.0.norm1.weight", "backbone.blocks.11.norm2.bias", "backbone.norm.weight",
                 "backbone.patch_embed.proj.weight", "backbone.blocks.5.attn.qkv.weight", "sem_seg_head.cls_emb",
                 "sem_seg_head.proj_patch", "sem_seg_head.proj_dec.weight", "sem_seg_head.blocks.1.mlp.fc1.weight"):
        assert decay[name] == 1e-6, name
    for name in ("sem_seg_head.blocks.0.norm1.weight", "sem_seg_head.blocks.0.attn.qkv.weight",
                 "sem_seg_head.ml_fc.W", "sem_seg_head.ml_fc.b"):
        assert decay[name] == pytest.approx(1e-4), name
    cfg, model = _build("segmenter_vit-b16_512x512_160k_ade20k-backbone-cls-emb-rankseg.yaml")
    decay = {g["name"]: g["weight_decay"] for g in _groups(cfg, model)}
    assert decay["backbone.cls_emb"] == 1e-6 and "sem_seg_head.cls_emb" not in decay


def _block(d: int) -> int:
    """A pre-norm transformer block of width d, FFN 4d: norm1 2d + qkv (3d^2 + 3d) + proj (d^2 + d) + norm2 2d +
    fc1 (4d^2 + 4d) + fc2 (4d^2 + d)."""
    return 12 * d * d + 13 * d


def test_heads_counted_by_hand():
    """ADE20K (K = 150), ViT-B (d = 768): the head's blocks, proj_dec (d_encoder = d), decoder_norm, the class
    tokens, proj_patch and proj_classes, LayerNorm(K); RankSeg: a third block, decoder_norm2, ml_fc (W, b) and
    LayerNorm(TOPK) instead of LayerNorm(K)."""
    k, d, top = 150, 768, 50
    assert _block(d) == 7_087_872
    shared = (d * d + d) + 2 * d + k * d + 2 * d * d
    _, base = _build("segmenter_vit-b16_512x512_160k_ade20k.yaml")
    assert count_parameters(base.sem_seg_head) == 2 * _block(d) + shared + 2 * k == 16_063_020
    _, ranked = _build("segmenter_vit-b16_512x512_160k_ade20k-rankseg.yaml")
    assert count_parameters(ranked.sem_seg_head) == 3 * _block(d) + shared + 2 * top + 2 * d + (k * d + k) == 23_267_578
    assert ranked.sem_seg_head.pooling.output_size == 8 and ranked.sem_seg_head.topk == 50
    # the class-embedding variant moves the K tokens into the backbone
    _, moved = _build("segmenter_vit-b16_512x512_160k_ade20k-backbone-cls-emb-rankseg.yaml")
    assert count_parameters(moved.sem_seg_head) == count_parameters(ranked.sem_seg_head) - k * d
    assert tuple(moved.backbone.cls_emb.shape) == (1, k, d) and moved.backbone.cls_emb_start_layer == 11
    # ViT-L (d = 1024) on ADE20K: the baseline ~333M (ViT-B ~102.5M)
    d = 1024
    _, large = _build("segmenter_vit-l16_640x640_160k_ade20k.yaml")
    assert count_parameters(large.sem_seg_head) == 2 * _block(d) + (d * d + d) + 2 * d + k * d + 2 * d * d + 2 * k
    assert count_parameters(base) == 86_434_560 + 16_063_020


@pytest.mark.slow
def test_class_embedding_variant_trains_and_infers():
    """The backbone-cls-emb RankSeg file, shrunk (ViT 2 blocks of 32, 8 px patches, head 32 wide): the ViT's class
    tokens reach the head, training gives both losses, sliding-window inference K maps."""
    cfg = get_cfg()
    cfg.merge_from_file(str(FOLDER / "segmenter_vit-b16_512x512_160k_ade20k-backbone-cls-emb-rankseg.yaml"))
    cfg.merge_from_list([
        "MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", "MODEL.VIT.IMG_SIZE", 32, "MODEL.VIT.PATCH_SIZE", 8,
        "MODEL.VIT.EMBED_DIM", 32, "MODEL.VIT.DEPTH", 2, "MODEL.VIT.NUM_HEADS", 2, "MODEL.VIT.CLS_EMB_START_LAYER", 1,
        "MODEL.SEM_SEG_HEAD.IN_FEATURES", ["vit1"], "MODEL.SEGMENTER.D_MODEL", 32, "MODEL.SEGMENTER.N_HEADS", 2,
        "MODEL.SEGMENTER.D_FF", 64, "MODEL.RANKSEG.POOL_SIZE", 2, "MODEL.SEM_SEG_HEAD.TEST_CROP_SIZE", (32, 32),
        "MODEL.SEM_SEG_HEAD.TEST_STRIDE", (32, 32),
    ])
    model = build_model(cfg)
    assert model.head_ranks and model.backbone.num_cls_emb == 150
    labels = torch.full((32, 32), 255, dtype=torch.long)
    labels[:, :16], labels[:, 16:] = 3, 77
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    losses = model([{"image": image, "sem_seg": labels}, {"image": image, "sem_seg": labels}])
    assert set(losses) == {"loss_sem_seg", "loss_ml"} and all(torch.isfinite(v) for v in losses.values())
    model.eval()
    with torch.no_grad():
        out = model([{"image": torch.randint(0, 256, (3, 32, 64), dtype=torch.uint8)}])[0]
    assert out["sem_seg"].shape == (150, 32, 64) and out["multilabel"]["topk"].shape == (50,)


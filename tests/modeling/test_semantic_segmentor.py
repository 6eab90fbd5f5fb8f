"""``SemanticSegmentor`` with DeepLabV3's head, the FCN auxiliary head and per-pixel RankSeg: output contract,
slide inference, the oracle, losses (by hand and falling on a tiny overfit), the heads' parameters, bad input."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from mask2former_rankseg.config import ConfigError, get_cfg
from mask2former_rankseg.modeling import build_model
from mask2former_rankseg.modeling.heads import DeepLabV3Head, FCNHead
from mask2former_rankseg.modeling.meta_arch.semantic_seg import pixel_cross_entropy, slide_windows

NUM_CLASSES = 12


def _cfg(*overrides):
    cfg = get_cfg()
    cfg.merge_from_list([
        "MODEL.META_ARCHITECTURE", "SemanticSegmentor", "MODEL.DEVICE", "cpu",
        "MODEL.BACKBONE.NAME", "build_resnet_deeplab_backbone", "MODEL.BACKBONE.FREEZE_AT", 0,
        "MODEL.RESNETS.DEPTH", 18, "MODEL.RESNETS.NORM", "BN", "MODEL.RESNETS.STEM_OUT_CHANNELS", 16,
        "MODEL.RESNETS.RES2_OUT_CHANNELS", 16, "MODEL.RESNETS.STEM_TYPE", "deeplab",
        "MODEL.RESNETS.RES4_DILATION", 2, "MODEL.RESNETS.RES5_DILATION", 4, "MODEL.RESNETS.RES5_MULTI_GRID", [1, 1],
        "MODEL.RESNETS.CONTRACT_DILATION", True, "MODEL.RESNETS.STRIDE_IN_1X1", False,
        "MODEL.RESNETS.OUT_FEATURES", ["res4", "res5"],
        "MODEL.SEM_SEG_HEAD.NAME", "DeepLabV3Head", "MODEL.SEM_SEG_HEAD.IN_FEATURES", ["res5"],
        "MODEL.SEM_SEG_HEAD.NUM_CLASSES", NUM_CLASSES, "MODEL.SEM_SEG_HEAD.ASPP_CHANNELS", 32,
        "MODEL.SEM_SEG_HEAD.ASPP_DILATIONS", [2, 4, 6], "MODEL.SEM_SEG_HEAD.NORM", "BN",
        "MODEL.SEM_SEG_HEAD.LOSS_TYPE", "cross_entropy",
        "MODEL.AUX_HEAD.NAME", "FCNHead", "MODEL.AUX_HEAD.CONVS_DIM", 16,
        "MODEL.RANKSEG.HIDDEN_DIM", 32, "MODEL.RANKSEG.TOPK", 4, "MODEL.RANKSEG.LOSS_WEIGHT", 10.0,
        "MODEL.RANKSEG.SHARE_EMBEDDING", True, "MODEL.RANKSEG.POOL_SIZE", 4,
        *overrides,
    ])
    return cfg


def _rankseg(*overrides):
    return _cfg("MODEL.RANKSEG.FLAG", True, *overrides)


def _image(h=64, w=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)


def _labels(h=64, w=64, classes=(1, 5, 9)):
    sem = torch.full((h, w), 255, dtype=torch.long)
    for i, c in enumerate(classes):
        sem[:, i * w // len(classes):(i + 1) * w // len(classes)] = c
    sem[: h // 8] = 255
    return sem


@pytest.mark.parametrize("rankseg", [False, True])
def test_inference_contract(rankseg):
    model = build_model(_rankseg() if rankseg else _cfg()).eval()
    with torch.no_grad():
        out = model([{"image": _image(64, 80), "height": 32, "width": 40}, {"image": _image(48, 64, seed=1)}])
    assert out[0]["sem_seg"].shape == (NUM_CLASSES, 32, 40) and out[1]["sem_seg"].shape == (NUM_CLASSES, 48, 64)
    torch.testing.assert_close(out[0]["sem_seg"].sum(0), torch.ones(32, 40))  # softmax probabilities
    if rankseg:
        topk = out[0]["multilabel"]["topk"]
        assert topk.shape == (4,) and out[0]["multilabel"]["scores"].shape == (NUM_CLASSES,)
        unselected = [c for c in range(NUM_CLASSES) if c not in topk.tolist()]
        assert float(out[0]["sem_seg"][unselected].max()) < 1e-30  # logit -100: probability ~ e^-100
        assert set(out[0]["sem_seg"].argmax(0).unique().tolist()) <= set(topk.tolist())
    else:
        assert "multilabel" not in out[0]
    model.semantic_output = "labels"
    with torch.no_grad():
        labels = model([{"image": _image(64, 80), "height": 32, "width": 40}])[0]["sem_seg_labels"]
    torch.testing.assert_close(labels, out[0]["sem_seg"].argmax(0))


def test_slide_windows_by_hand():
    assert slide_windows(100, 60, (64, 64), (32, 32)) == [(0, 64, 0, 60), (32, 96, 0, 60), (36, 100, 0, 60)]
    assert slide_windows(64, 64, (64, 64), (32, 32)) == [(0, 64, 0, 64)]


def test_slide_equals_whole_when_one_window_covers_the_image_and_ranks_each_window():
    model = build_model(_rankseg()).eval()
    image = _image(64, 64)
    with torch.no_grad():
        whole = model([{"image": image}])[0]
        model.test_mode, model.test_crop_size, model.test_stride = "slide", (64, 64), (32, 32)
        slide = model([{"image": image}])[0]
    torch.testing.assert_close(slide["sem_seg"], whole["sem_seg"])
    torch.testing.assert_close(slide["multilabel"]["scores"], whole["multilabel"]["scores"])
    # two windows: each ranks on its own; the image-level logits are their mean
    model.test_crop_size, model.test_stride = (64, 48), (32, 32)
    with torch.no_grad():
        out = model([{"image": image}])[0]
        left = model.ml_head(model.backbone(((image[:, :, :48].float() - model.pixel_mean) / model.pixel_std)[None])
                             ["res5"], model.sem_seg_head.predictor.class_embedding)
        right = model.ml_head(model.backbone(((image[:, :, 16:].float() - model.pixel_mean) / model.pixel_std)[None])
                              ["res5"], model.sem_seg_head.predictor.class_embedding)
    torch.testing.assert_close(out["multilabel"]["scores"], ((left + right) / 2)[0])


def test_slide_crop_larger_than_the_image_names_the_key():
    cfg = _cfg("MODEL.SEM_SEG_HEAD.TEST_MODE", "slide", "MODEL.SEM_SEG_HEAD.TEST_CROP_SIZE", (96, 96))
    model = build_model(cfg).eval()
    with pytest.raises(ConfigError, match="TEST_CROP_SIZE"), torch.no_grad():
        model([{"image": _image(64, 64)}])


def test_training_losses_by_hand():
    """loss_sem_seg is the cross-entropy over the top-k (labels as rank positions, unselected categories ignored,
    averaged over all pixels as mmseg does), loss_aux the auxiliary head's over all categories x 0.4, loss_ml the
    asymmetric loss x 10."""
    model = build_model(_rankseg()).train()
    torch.manual_seed(0)
    batch = [{"image": _image(64, 64, seed=s), "sem_seg": _labels(classes=c)} for s, c in ((0, (1, 5, 9)), (1, (2, 3)))]
    seen = {}
    forward = model.sem_seg_head.forward
    model.sem_seg_head.forward = lambda f, t=None: seen.setdefault("logits", forward(f, t))
    rank = model.ml_head.forward
    model.ml_head.forward = lambda *a: seen.setdefault("image_logits", rank(*a))
    aux = model.aux_head.forward
    model.aux_head.forward = lambda f: seen.setdefault("aux", aux(f))
    losses = model(batch)
    labels = torch.stack([x["sem_seg"] for x in batch])
    topk = torch.sort(seen["image_logits"].detach(), dim=1, descending=True, stable=True).indices[:, :4]
    ranked = torch.full_like(labels, 255)
    for b in range(2):
        for r, c in enumerate(topk[b].tolist()):
            ranked[b][labels[b] == c] = r
    up = F.interpolate(seen["logits"], size=(64, 64), mode="bilinear", align_corners=False)
    expected = F.cross_entropy(up, ranked, ignore_index=255, reduction="sum") / ranked.numel()
    torch.testing.assert_close(losses["loss_sem_seg"], expected)
    up_aux = F.interpolate(seen["aux"], size=(64, 64), mode="bilinear", align_corners=False)
    torch.testing.assert_close(losses["loss_aux"], 0.4 * F.cross_entropy(up_aux, labels, ignore_index=255,
                                                                         reduction="sum") / labels.numel())
    present = torch.zeros(2, NUM_CLASSES)
    present[0, [1, 5, 9]] = 1
    present[1, [2, 3]] = 1
    torch.testing.assert_close(losses["loss_ml"], 10.0 * model.ml_loss(seen["image_logits"], present))


def test_pixel_cross_entropy_equals_the_dense_formulation():
    """Resize + cross-entropy over every pixel (mmseg: ignored pixels count as 0 in the mean), value and gradient;
    and hard pixel mining: the mean of the largest fifth."""
    torch.manual_seed(0)
    logits = torch.randn(2, 7, 5, 9, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 7, (2, 13, 20))
    labels[torch.rand(2, 13, 20) < 0.4] = 255
    dense = F.cross_entropy(F.interpolate(logits, size=(13, 20), mode="bilinear", align_corners=False), labels,
                            ignore_index=255, reduction="none")
    ours = pixel_cross_entropy(logits, labels, 255)
    torch.testing.assert_close(ours, dense.mean())
    torch.testing.assert_close(torch.autograd.grad(ours, logits)[0], torch.autograd.grad(dense.mean(), logits)[0])
    top = torch.topk(dense.flatten(), int(0.2 * dense.numel())).values.mean()
    torch.testing.assert_close(pixel_cross_entropy(logits, labels, 255, "hard_pixel_mining"), top)


@pytest.mark.slow
@pytest.mark.parametrize("rankseg", [False, True])
def test_loss_falls_on_a_tiny_overfit(rankseg):
    model = build_model(_rankseg() if rankseg else _cfg()).train()
    batch = [{"image": _image(64, 64, seed=s), "sem_seg": _labels(classes=c)} for s, c in ((0, (1, 5, 9)), (1, (2, 3)))]
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    totals = []
    for _ in range(25):
        losses = model(batch)
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(float(total))
    assert totals[-1] < 0.5 * totals[0], totals


def test_oracle_keeps_the_present_categories():
    for cfg in (_cfg("MODEL.RANKSEG.USE_GT", True), _rankseg("MODEL.RANKSEG.USE_GT", True)):
        model = build_model(cfg).eval()
        with torch.no_grad():
            out = model([{"image": _image(), "sem_seg": _labels(classes=(2, 7))}])[0]
        assert set(out["sem_seg"].argmax(0).unique().tolist()) <= {2, 7}
        if cfg.MODEL.RANKSEG.FLAG:
            assert sorted(out["multilabel"]["topk"][:2].tolist()) == [2, 7]  # present categories ranked first
        with pytest.raises(ValueError, match="USE_GT"), torch.no_grad():
            model([{"image": _image()}])


def test_head_parameters_by_hand():
    """DeepLabV3Head: pooling branch 1x1, 1x1 branch, three dilated 3x3 branches, a 3x3 bottleneck over the 5
    concatenated branches (BN: 2 parameters per channel), and the 1x1 classifier; FCNHead: one 3x3 conv + BN and its
    classifier."""
    model = build_model(_cfg())
    c_in, c, k = 128, 32, NUM_CLASSES  # res5 of a ResNet-18 with RES2_OUT_CHANNELS 16, ASPP_CHANNELS, classes
    aspp = (c_in * c + 2 * c) * 2 + (9 * c_in * c + 2 * c) * 3 + (9 * 5 * c * c + 2 * c) + (c * k + k)
    assert isinstance(model.sem_seg_head, DeepLabV3Head)
    assert sum(p.numel() for p in model.sem_seg_head.parameters()) == aspp
    fcn = (9 * 64 * 16 + 2 * 16) + (16 * k + k)  # on res4 (64 channels)
    assert isinstance(model.aux_head, FCNHead) and sum(p.numel() for p in model.aux_head.parameters()) == fcn
    names = {n for n, _ in model.named_parameters()}
    assert {"sem_seg_head.image_pool.1.conv.weight", "sem_seg_head.aspp_modules.3.bn.weight",
            "sem_seg_head.bottleneck.conv.weight", "sem_seg_head.predictor.weight",
            "aux_head.convs.0.conv.weight", "aux_head.conv_seg.weight"} <= names
    ranked = build_model(_rankseg())
    assert {"sem_seg_head.predictor.cls_emb", "sem_seg_head.predictor.cls_bias_emb",
            "sem_seg_head.predictor.norm.weight", "ml_head.proj_dec.depthwise_conv.conv.weight",
            "ml_head.fc.W"} <= {n for n, _ in ranked.named_parameters()}


def test_bad_configs_name_the_key():
    with pytest.raises(ConfigError, match="TOPK=20"):
        build_model(_rankseg("MODEL.RANKSEG.TOPK", 20))
    with pytest.raises(ConfigError, match="MODEL.SEM_SEG_HEAD.IN_FEATURES"):
        build_model(_cfg("MODEL.SEM_SEG_HEAD.IN_FEATURES", ["res3"]))
    with pytest.raises(ConfigError, match="MODEL.AUX_HEAD.IN_FEATURES"):
        build_model(_cfg("MODEL.AUX_HEAD.IN_FEATURES", ["res2"]))
    with pytest.raises(ConfigError, match="SHARE_EMBEDDING.*ASPP_CHANNELS"):
        build_model(_rankseg("MODEL.SEM_SEG_HEAD.ASPP_CHANNELS", 48))
    with pytest.raises(ConfigError, match="MODEL.RANKSEG.IN_FEATURE"):
        build_model(_rankseg("MODEL.RANKSEG.IN_FEATURE", "res2"))
    with pytest.raises(ConfigError, match="TEST_MODE"):
        build_model(_cfg("MODEL.SEM_SEG_HEAD.TEST_MODE", "tiles"))
    with pytest.raises(ConfigError, match="LOSS_TYPE"):
        build_model(_cfg("MODEL.SEM_SEG_HEAD.LOSS_TYPE", "focal"))

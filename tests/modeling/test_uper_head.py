"""``UPerHead``: parameters and mmseg's names counted by hand, the PPM / top-down / fusion path on a hand-computed
case, config errors, and ``SemanticSegmentor`` with UPerHead on a tiny Swin, with and without RankSeg."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mask2former_rankseg.config import ConfigError, get_cfg
from mask2former_rankseg.layers import ShapeSpec
from mask2former_rankseg.modeling import build_model
from mask2former_rankseg.modeling.heads import PPM, LinearPixelClassifier, UPerHead

FEATURES = ["res2", "res3", "res4", "res5"]
SHAPES = {f: ShapeSpec(channels=c, stride=s) for f, c, s in zip(FEATURES, (4, 8, 16, 32), (4, 8, 16, 32))}


def _head(channels=8, in_channels=(4, 8, 16, 32), norm="BN", num_classes=5, dropout=0.1) -> UPerHead:
    return UPerHead(in_channels, channels, pool_scales=(1, 2, 3, 6), norm=norm, dropout=dropout,
                    predictor=LinearPixelClassifier(channels, num_classes), in_features=FEATURES)


def test_parameters_and_names_are_mmsegs():
    """Inputs 4/8/16/32 channels, width C = 8, K = 5, BN (2 per channel; convolutions without bias)."""
    head = _head()
    c = 8
    ppm = 4 * (32 * c + 2 * c)  # one 1x1 conv + BN per pool scale
    bottleneck = 9 * (32 + 4 * c) * c + 2 * c  # 3x3 over [res5, 4 pooled maps]
    laterals = (4 + 8 + 16) * c + 3 * 2 * c  # 1x1 on res2..res4
    fpn = 3 * (9 * c * c + 2 * c)  # 3x3 on the three finer levels
    fuse = 9 * 4 * c * c + 2 * c  # 3x3 over the 4 concatenated levels
    classifier = c * 5 + 5
    assert (ppm, bottleneck, laterals, fpn, fuse) == (1_088, 4_624, 272, 1_776, 2_320)
    assert sum(p.numel() for p in head.parameters()) == ppm + bottleneck + laterals + fpn + fuse + classifier == 10_125
    names = set(head.state_dict())
    assert {"psp_modules.0.1.conv.weight", "psp_modules.3.1.bn.running_mean", "bottleneck.conv.weight",
            "lateral_convs.2.conv.weight", "fpn_convs.0.bn.weight", "fpn_bottleneck.conv.weight",
            "predictor.weight", "predictor.bias"} <= names
    assert not any(".conv.bias" in n for n in names)  # mmcv's ConvModule: no conv bias before a norm
    assert isinstance(head.psp_modules, PPM) and len(head.lateral_convs) == len(head.fpn_convs) == 3


def _centre(conv: nn.Conv2d, out_in_pairs, value: float = 1.0) -> None:
    """Zero ``conv`` and set its centre tap ``weight[o, i] = value`` for each (o, i)."""
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    k = conv.kernel_size[0] // 2
    for o, i in out_in_pairs:
        conv.weight.data[o, i, k, k] = value


def test_pyramid_pooling_top_down_and_fusion_by_hand():
    """Width 1, no norm, identity 1x1 / centre-tap 3x3 convolutions (ReLU is the identity on these positive maps):
    res2..res4 are constant 1, 10, 100; res5 is [[1, 3], [5, 7]] and the bottleneck keeps only the scale-1 pooled
    map, its mean 4. Top down: L3 = 4, L2 = 100 + 4, L1 = 10 + 104, L0 = 1 + 114; ``fpn_bottleneck`` weighs the
    levels 1, 2, 3, 4: 115 + 2 * 114 + 3 * 104 + 4 * 4 = 671, everywhere; the classifier adds its bias 0.5."""
    head = UPerHead([1, 1, 1, 1], 1, pool_scales=(1, 2, 3, 6), norm="", dropout=0.0,
                    predictor=LinearPixelClassifier(1, 1), in_features=FEATURES).eval()
    for branch in head.psp_modules:
        _centre(branch[1].conv, [(0, 0)])
    _centre(head.bottleneck.conv, [(0, 1)])  # inputs: [res5, pooled 1, 2, 3, 6] -> the global mean
    for conv in [*head.lateral_convs, *head.fpn_convs]:
        _centre(conv.conv, [(0, 0)])
    _centre(head.fpn_bottleneck.conv, [])
    head.fpn_bottleneck.conv.weight.data[0, :, 1, 1] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    nn.init.ones_(head.predictor.weight)
    nn.init.constant_(head.predictor.bias, 0.5)
    features = {"res2": torch.full((1, 1, 16, 16), 1.0), "res3": torch.full((1, 1, 8, 8), 10.0),
                "res4": torch.full((1, 1, 4, 4), 100.0), "res5": torch.tensor([[[[1.0, 3.0], [5.0, 7.0]]]])}
    with torch.no_grad():
        out = head(features)
    torch.testing.assert_close(out, torch.full((1, 1, 16, 16), 671.5))


def test_ppm_pools_then_upsamples():
    """Scale 1 is the global mean; scale 2 on a 2x2 map is the map itself (1x1 identity convolution, no norm)."""
    ppm = PPM((1, 2), 1, 1, norm="")
    for branch in ppm:
        _centre(branch[1].conv, [(0, 0)])
    x = torch.tensor([[[[1.0, 3.0], [5.0, 7.0]]]])
    with torch.no_grad():
        pooled = ppm(x)
    torch.testing.assert_close(pooled[0], torch.full_like(x, 4.0))
    torch.testing.assert_close(pooled[1], x)


def test_output_at_the_finest_stride_and_rankseg_selection():
    head = _head().eval()
    features = {f: torch.randn(2, s.channels, 64 // s.stride, 64 // s.stride) for f, s in SHAPES.items()}
    with torch.no_grad():
        assert head(features).shape == (2, 5, 16, 16)
    with pytest.raises(ValueError, match="SelectedLabelClassifier"):
        head(features, torch.zeros(2, 3, dtype=torch.long))


def _cfg(*overrides):
    """UPerHead + FCN auxiliary head on a 16-channel Swin (res2..res5: 16, 32, 64, 128 channels)."""
    cfg = get_cfg()
    cfg.merge_from_list([
        "MODEL.META_ARCHITECTURE", "SemanticSegmentor", "MODEL.DEVICE", "cpu",
        "MODEL.BACKBONE.NAME", "D2SwinTransformer", "MODEL.SWIN.EMBED_DIM", 16, "MODEL.SWIN.DEPTHS", [1, 1, 1, 1],
        "MODEL.SWIN.NUM_HEADS", [1, 2, 2, 4], "MODEL.SWIN.WINDOW_SIZE", 4, "MODEL.SWIN.PRETRAIN_IMG_SIZE", 64,
        "MODEL.SWIN.DROP_PATH_RATE", 0.0,
        "MODEL.SEM_SEG_HEAD.NAME", "UPerHead", "MODEL.SEM_SEG_HEAD.IN_FEATURES", FEATURES,
        "MODEL.SEM_SEG_HEAD.NUM_CLASSES", 12, "MODEL.SEM_SEG_HEAD.CONVS_DIM", 16, "MODEL.SEM_SEG_HEAD.NORM", "BN",
        "MODEL.SEM_SEG_HEAD.LOSS_TYPE", "cross_entropy",
        "MODEL.AUX_HEAD.NAME", "FCNHead", "MODEL.AUX_HEAD.IN_FEATURES", ["res4"], "MODEL.AUX_HEAD.CONVS_DIM", 8,
        "MODEL.RANKSEG.HIDDEN_DIM", 16, "MODEL.RANKSEG.TOPK", 4, "MODEL.RANKSEG.LOSS_WEIGHT", 10.0,
        "MODEL.RANKSEG.SHARE_EMBEDDING", True, "MODEL.RANKSEG.POOL_SIZE", 0,
        *overrides,
    ])
    return cfg


def _inputs():
    """Two images (the PPM's 1x1 pooled map needs more than one value per channel for batch norm in training)."""
    g = torch.Generator().manual_seed(0)
    sem = torch.full((64, 64), 255, dtype=torch.long)
    sem[:, :32], sem[:, 32:] = 3, 8
    return [{"image": torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8, generator=g), "sem_seg": sem}
            for _ in range(2)]


@pytest.mark.parametrize("rankseg", [False, True])
def test_semantic_segmentor_with_uper_head_on_swin(rankseg):
    """The head reads res2..res5, the auxiliary head res4 (64 channels), the multi-label head res5 unpooled
    (POOL_SIZE 0, as upstream's UPerNet RankSeg configs: 2x2 tokens here) with the classifier's 16-wide rows."""
    cfg = _cfg("MODEL.RANKSEG.FLAG", rankseg)
    model = build_model(cfg)
    assert isinstance(model.sem_seg_head, UPerHead)
    assert model.aux_head.convs[0].conv.in_channels == 64
    losses = model(_inputs())
    assert sorted(losses) == (["loss_aux", "loss_ml", "loss_sem_seg"] if rankseg else ["loss_aux", "loss_sem_seg"])
    assert all(torch.isfinite(v) for v in losses.values())
    model.eval()
    with torch.no_grad():
        out = model([{"image": _inputs()[0]["image"], "height": 32, "width": 48}])[0]
    assert out["sem_seg"].shape == (12, 32, 48)
    if rankseg:
        assert model.ml_head.pooling is None and model.ml_head.proj_dec.in_features == 128
        assert out["multilabel"]["topk"].shape == (4,)


def test_bad_uper_configs_name_the_key():
    with pytest.raises(ConfigError, match="MODEL.SEM_SEG_HEAD.IN_FEATURES.*finest first"):
        build_model(_cfg("MODEL.SEM_SEG_HEAD.IN_FEATURES", ["res3", "res2", "res4", "res5"]))
    with pytest.raises(ConfigError, match="MODEL.SEM_SEG_HEAD.POOL_SCALES"):
        build_model(_cfg("MODEL.SEM_SEG_HEAD.POOL_SCALES", [0, 2]))
    with pytest.raises(ConfigError, match="SHARE_EMBEDDING.*CONVS_DIM"):
        build_model(_cfg("MODEL.RANKSEG.FLAG", True, "MODEL.RANKSEG.HIDDEN_DIM", 32))
    with pytest.raises(ConfigError, match="MODEL.RANKSEG.POOL_SIZE=-1"):
        build_model(_cfg("MODEL.RANKSEG.FLAG", True, "MODEL.RANKSEG.POOL_SIZE", -1))

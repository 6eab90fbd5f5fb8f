"""configs/deeplabv3/: every file loads and builds (on the meta device); parameter counts, with the heads' derived
by hand from mmseg's DeepLabV3 structure."""

from __future__ import annotations

import pytest
from helpers import CONFIGS, build_on_meta, count_parameters

PARAMETERS = {
    "deeplabv3_r101-d8_512x512_80k_ade20k.yaml": 87_206_028,
    "deeplabv3_r101-d8_512x512_80k_ade20k-rankseg.yaml": 91_489_670,
    "deeplabv3_r101-d8_512x512_80k_ade20k-gt.yaml": 91_489_670,
    "deeplabv3_r101-d8_512x512_20k_coco-stuff10k.yaml": 87_222_198,
    "deeplabv3_r101-d8_512x512_20k_coco-stuff10k-rankseg.yaml": 91_516_613,
    "deeplabv3_r101-d8_512x512_20k_coco-stuff10k-gt.yaml": 91_516_613,
    "deeplabv3_r101-d8_512x512_160k_coco-lvis.yaml": 88_079_208,
    "deeplabv3_r101-d8_512x512_160k_coco-lvis-rankseg.yaml": 92_944_592,
    "deeplabv3_r101-d8_512x512_160k_coco-lvis-gt.yaml": 92_944_592,
}
BACKBONE = 42_519_392  # ResNetV1c-101 without its classifier (the backbone tests derive it)


def _build(name: str):
    return build_on_meta(CONFIGS / "deeplabv3" / name)


def test_every_config_is_listed():
    assert sorted(p.name for p in (CONFIGS / "deeplabv3").glob("deeplabv3_*.yaml")) == sorted(PARAMETERS)


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_config_builds_with_its_parametercount_parameters(name):
    cfg, model = _build(name)
    assert count_parameters(model) == PARAMETERS[name]
    assert count_parameters(model.backbone) == BACKBONE
    k = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
    assert cfg.SOLVER.BASE_LR == 0.01 and cfg.SOLVER.BASE_LR_END == 1e-4 and cfg.SOLVER.IMS_PER_BATCH == 16
    assert tuple(cfg.INPUT.CROP.SIZE) == (512, 512) and cfg.INPUT.RESIZE.TYPE == "ratio_range"
    if cfg.MODEL.RANKSEG.FLAG:
        assert cfg.MODEL.RANKSEG.TOPK == 50 < k and cfg.MODEL.RANKSEG.LOSS_WEIGHT == 10
        assert name.endswith("-gt.yaml") == cfg.MODEL.RANKSEG.USE_GT


def test_heads_counted_by_hand():
    """ADE20K (K = 150), res5 2048 channels, res4 1024, 512-channel ASPP, 256-channel FCN; BN: 2 per channel."""
    _, base = _build("deeplabv3_r101-d8_512x512_80k_ade20k.yaml")
    _, ranked = _build("deeplabv3_r101-d8_512x512_80k_ade20k-rankseg.yaml")
    k, c_in, c = 150, 2048, 512
    branches = 2 * (c_in * c + 2 * c) + 3 * (9 * c_in * c + 2 * c)  # image pooling + 1x1, three 3x3 at 12/24/36
    bottleneck = 9 * 5 * c * c + 2 * c
    assert count_parameters(base.sem_seg_head) == branches + bottleneck + (c * k + k)  # + conv_seg
    assert count_parameters(base.aux_head) == (9 * 1024 * 256 + 2 * 256) + (256 * k + k)
    # RankSeg: the classifier is the class embedding, its bias and LayerNorm(50); the multi-label head is a
    # depthwise-separable projection 2048 -> 512, one transformer block (FFN 2048), a LayerNorm and the group-wise
    # read-out (the class tokens are the classifier's: shared)
    assert count_parameters(ranked.sem_seg_head) == branches + bottleneck + (k * c + k + 2 * 50)
    block = 2 * (2 * c) + (c * 3 * c + 3 * c) + (c * c + c) + (c * 2048 + 2048) + (2048 * c + c)
    assert count_parameters(ranked.ml_head) == (c_in + c_in) + (c_in * c + c) + block + 2 * c + (k * c + k)

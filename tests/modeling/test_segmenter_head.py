"""Segmenter's mask transformer head, baseline and RankSeg: the per-image gather of the top-k class tokens (batch 3
equals three batches of 1; against a loop), the cosine classifier on a hand case, names, and the head inside
``SemanticSegmentor`` (losses, inference contract, the oracle)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from mask2former_rankseg.config import ConfigError, get_cfg
from mask2former_rankseg.modeling import build_model
from mask2former_rankseg.modeling.heads import MaskTransformerHead

K = 10


def _head(topk=None, **kwargs):
    torch.manual_seed(0)
    return MaskTransformerHead(24, K, n_layers=3 if topk else 2, n_heads=2, d_model=16, d_ff=32, topk=topk,
                               pool_size=2, **kwargs).eval()


def _select(k):
    return lambda scores: torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]


def test_rankseg_batch_of_three_equals_three_batches_of_one():
    head = _head(topk=4)
    x = torch.randn(3, 24, 6, 5)
    with torch.no_grad():
        logits, image_logits, topk = head.forward_ranked({"res5": x}, _select(4))
        for i in range(3):
            one = head.forward_ranked({"res5": x[i:i + 1]}, _select(4))
            torch.testing.assert_close(one[0], logits[i:i + 1], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(one[1], image_logits[i:i + 1], atol=1e-5, rtol=1e-5)
            assert torch.equal(one[2], topk[i:i + 1])
    assert logits.shape == (3, 4, 6, 5) and image_logits.shape == (3, K)


def test_gathered_class_tokens_equal_a_loop():
    """The tokens that join the patches are, for each image, its own image-adapted tokens of its top-k, in rank
    order (upstream's reshape takes them from image 0's rows whenever B > 1)."""
    head = _head(topk=4)
    x = torch.randn(3, 24, 4, 4)
    seen = {}
    head.blocks[1].register_forward_pre_hook(lambda module, args: seen.setdefault("tokens", args[0]))
    with torch.no_grad():
        _, _, topk = head.forward_ranked({"res5": x}, _select(4))
        pooled = head.proj_dec(head.pooling(x).flatten(2).transpose(1, 2))
        adapted = head.decoder_norm2(head.blocks[0](torch.cat((pooled, head.cls_emb.expand(3, -1, -1)), 1))[:, -K:])
    expected = torch.stack([torch.stack([adapted[b, c] for c in topk[b].tolist()]) for b in range(3)])
    torch.testing.assert_close(seen["tokens"][:, -4:], expected)
    torch.testing.assert_close(seen["tokens"][:, :-4], head.proj_dec(x.flatten(2).transpose(1, 2)))


def test_unpooled_ranking_block_passes_its_patch_tokens_on():
    """pool_size 0 (upstream's downsample=None): the first block reads every patch with the class tokens, and its
    patch outputs, not the projected map, join the top-k tokens."""
    head = _head(topk=4)
    head.pooling = None
    x = torch.randn(2, 24, 3, 4)
    seen = {}
    head.blocks[1].register_forward_pre_hook(lambda module, args: seen.setdefault("tokens", args[0]))
    with torch.no_grad():
        _, image_logits, topk = head.forward_ranked({"res5": x}, _select(4))
        first = head.blocks[0](torch.cat((head.proj_dec(x.flatten(2).transpose(1, 2)), head.cls_emb.expand(2, -1, -1)),
                                         1))
        adapted = head.decoder_norm2(first[:, -K:])
    torch.testing.assert_close(image_logits, head.ml_fc(adapted))
    torch.testing.assert_close(seen["tokens"][:, :-4], first[:, :-K])
    expected = torch.stack([adapted[b, topk[b]] for b in range(2)])
    torch.testing.assert_close(seen["tokens"][:, -4:], expected)
    assert MaskTransformerHead(24, K, n_layers=3, n_heads=2, d_model=16, d_ff=32, topk=4, pool_size=0).pooling is None


def test_cosine_classifier_on_a_hand_case():
    head = _head()
    head.decoder_norm = nn.Identity()
    with torch.no_grad():
        head.proj_patch.copy_(torch.eye(16))
        head.proj_classes.copy_(torch.eye(16))
    tokens = torch.zeros(1, 2 + 2, 16)  # 2 patches (H=1, W=2) then 2 classes
    tokens[0, 0, :2] = torch.tensor([3.0, 4.0])  # patch 0 along (0.6, 0.8)
    tokens[0, 1, 0] = -2.0                        # patch 1 along (-1, 0)
    tokens[0, 2, 0] = 5.0                         # class 0 along (1, 0)
    tokens[0, 3, 1] = 0.5                         # class 1 along (0, 1)
    head.mask_norm = nn.LayerNorm(2)  # two classes here
    out = head._cosine_logits(tokens, 2, (1, 2))
    cos = torch.tensor([[0.6, 0.8], [-1.0, 0.0]])  # [patch, class]
    torch.testing.assert_close(out[0].permute(1, 2, 0)[0], F.layer_norm(cos, (2,)))


def test_parameter_names_are_upstreams():
    base = {n for n, _ in _head().named_parameters()}
    ranked = {n for n, _ in _head(topk=4).named_parameters()}
    assert {"cls_emb", "proj_dec.weight", "proj_patch", "proj_classes", "decoder_norm.weight", "mask_norm.weight",
            "blocks.1.attn.qkv.weight", "blocks.0.mlp.fc2.bias"} <= base
    assert ranked - base == {"decoder_norm2.weight", "decoder_norm2.bias", "ml_fc.W", "ml_fc.b",
                             "blocks.2.norm1.weight", "blocks.2.norm1.bias", "blocks.2.attn.qkv.weight",
                             "blocks.2.attn.qkv.bias", "blocks.2.attn.proj.weight", "blocks.2.attn.proj.bias",
                             "blocks.2.norm2.weight", "blocks.2.norm2.bias", "blocks.2.mlp.fc1.weight",
                             "blocks.2.mlp.fc1.bias", "blocks.2.mlp.fc2.weight", "blocks.2.mlp.fc2.bias"}
    assert _head(topk=4).mask_norm.normalized_shape == (4,) and _head().mask_norm.normalized_shape == (K,)
    assert "cls_emb" not in {n for n, _ in _head(cls_emb_from_backbone=True).named_parameters()}
    with pytest.raises(ValueError, match="forward_ranked"):
        _head(topk=4)({"res5": torch.randn(1, 24, 2, 2)})


def _cfg(*overrides):
    cfg = get_cfg()
    cfg.merge_from_list([
        "MODEL.META_ARCHITECTURE", "SemanticSegmentor", "MODEL.DEVICE", "cpu",
        "MODEL.BACKBONE.NAME", "build_resnet_deeplab_backbone", "MODEL.RESNETS.DEPTH", 18, "MODEL.RESNETS.NORM", "BN",
        "MODEL.RESNETS.STEM_OUT_CHANNELS", 16, "MODEL.RESNETS.RES2_OUT_CHANNELS", 16,
        "MODEL.RESNETS.OUT_FEATURES", ["res5"], "MODEL.RESNETS.RES5_MULTI_GRID", [1, 1],
        "MODEL.SEM_SEG_HEAD.NAME", "MaskTransformerHead", "MODEL.SEM_SEG_HEAD.IN_FEATURES", ["res5"],
        "MODEL.SEM_SEG_HEAD.NUM_CLASSES", K, "MODEL.SEM_SEG_HEAD.LOSS_TYPE", "cross_entropy",
        "MODEL.SEGMENTER.N_HEADS", 2, "MODEL.SEGMENTER.D_MODEL", 32, "MODEL.SEGMENTER.D_FF", 64,
        "MODEL.RANKSEG.TOPK", 4, "MODEL.RANKSEG.LOSS_WEIGHT", 10.0, "MODEL.RANKSEG.POOL_SIZE", 2,
        *overrides,
    ])
    return cfg


def _rankseg(*overrides):
    return _cfg("MODEL.RANKSEG.FLAG", True, "MODEL.SEGMENTER.N_LAYERS", 3, *overrides)


def _labels(classes):
    sem = torch.full((64, 64), 255, dtype=torch.long)
    for i, c in enumerate(classes):
        sem[:, i * 64 // len(classes):(i + 1) * 64 // len(classes)] = c
    return sem


def test_in_semantic_segmentor_losses_inference_and_oracle():
    model = build_model(_rankseg())
    assert model.ml_head is None and model.head_ranks
    images = [torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8) for _ in range(2)]
    losses = model([{"image": images[0], "sem_seg": _labels((1, 5))}, {"image": images[1], "sem_seg": _labels((2,))}])
    assert set(losses) == {"loss_sem_seg", "loss_ml"} and all(torch.isfinite(v) for v in losses.values())
    model.eval()
    with torch.no_grad():
        out = model([{"image": images[0], "height": 32, "width": 48}])[0]
    assert out["sem_seg"].shape == (K, 32, 48) and out["multilabel"]["topk"].shape == (4,)
    assert set(out["sem_seg"].argmax(0).unique().tolist()) <= set(out["multilabel"]["topk"].tolist())
    oracle = build_model(_rankseg("MODEL.RANKSEG.USE_GT", True)).eval()
    with torch.no_grad():
        out = oracle([{"image": images[0], "sem_seg": _labels((3, 8))}])[0]
    assert sorted(out["multilabel"]["topk"][:2].tolist()) == [3, 8]
    assert set(out["sem_seg"].argmax(0).unique().tolist()) <= {3, 8}
    baseline = build_model(_cfg()).eval()
    assert baseline.ml_head is None and not baseline.head_ranks
    with torch.no_grad():
        assert set(baseline([{"image": images[0]}])[0]) == {"sem_seg"}


def test_bad_configs():
    with pytest.raises(ConfigError, match="N_LAYERS=1"):
        build_model(_rankseg("MODEL.SEGMENTER.N_LAYERS", 1))
    with pytest.raises(ConfigError, match="CLS_EMB_FROM_BACKBONE"):
        build_model(_cfg("MODEL.SEGMENTER.CLS_EMB_FROM_BACKBONE", True))
    with pytest.raises(ConfigError, match="TOPK=11"):
        build_model(_rankseg("MODEL.RANKSEG.TOPK", 11))



# the head on the ViT (32 wide, 2 blocks, 8 px patches at 32 px) with its class-embedding variant
VIT_CLS_EMB = ["MODEL.BACKBONE.NAME", "build_vit_backbone", "MODEL.VIT.IMG_SIZE", 32, "MODEL.VIT.PATCH_SIZE", 8,
               "MODEL.VIT.EMBED_DIM", 32, "MODEL.VIT.DEPTH", 2, "MODEL.VIT.NUM_HEADS", 2,
               "MODEL.VIT.CLS_EMB_START_LAYER", 1, "MODEL.SEM_SEG_HEAD.IN_FEATURES", ["vit1"],
               "MODEL.SEGMENTER.CLS_EMB_FROM_BACKBONE", True]


@pytest.mark.slow
def test_class_tokens_from_the_vit():
    """The ViT returns its class tokens beside its maps, not in output_shape(): the head takes them from the config
    (also built on the meta device), and their width must be the head's."""
    with torch.device("meta"):
        model = build_model(_rankseg(*VIT_CLS_EMB))
    assert model.backbone.cls_emb.shape == (1, K, 32) and not hasattr(model.sem_seg_head, "cls_emb")
    model = build_model(_cfg(*VIT_CLS_EMB)).eval()
    with torch.no_grad():
        out = model([{"image": torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)}])[0]
    assert out["sem_seg"].shape == (K, 32, 32)
    with pytest.raises(ConfigError, match="EMBED_DIM=32 wide; MODEL.SEGMENTER.D_MODEL=16 must equal it"):
        build_model(_cfg(*VIT_CLS_EMB, "MODEL.SEGMENTER.D_MODEL", 16))

"""RankSeg's wiring (modeling/rankseg/wiring.py): the config mapping and its checks, the one TOPK check at every
entry point, the oracle and ranking on decoder outputs, target remapping, loss_ml and the multilabel output."""

import math
import subprocess
import sys

import pytest
import torch
from helpers import REPO
from torch import nn

from mask2former_rankseg.config import ConfigError, get_cfg
from mask2former_rankseg.modeling import build_model, validate_model_config
from mask2former_rankseg.modeling.meta_arch import MaskFormer, VideoMaskFormer
from mask2former_rankseg.modeling.rankseg import (
    QUERY_LAYER,
    AsymmetricLoss,
    MultiLabelHead,
    apply_oracle_and_ranking,
    build_multilabel_loss,
    check_rankseg_args,
    check_rankseg_config,
    check_topk,
    gather_ranked,
    multilabel_loss,
    multilabel_result,
    pixel_rankseg_kwargs_from_config,
    ranked_targets,
    rankseg_kwargs_from_config,
    select_topk,
)
from mask2former_rankseg.modeling.rankseg.multilabel_head import SeparableProjection

SYNTHETIC_RANKSEG = REPO / "configs/synthetic/maskformer2_R18_synthetic-rankseg.yaml"
TOPK_6_OF_5 = ("MODEL.RANKSEG.TOPK=6 must lie in [1, MODEL.SEM_SEG_HEAD.NUM_CLASSES=5]: the number of categories "
               "RankSeg keeps per image (or clip); set 1 <= TOPK <= 5.")


def _rankseg_cfg(**keys):
    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "MaskFormer"
    cfg.MODEL.RANKSEG.FLAG = True
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 5
    cfg.MODEL.RANKSEG.TOPK = 3
    for key, value in keys.items():
        node = cfg
        *path, leaf = key.split(".")
        for part in path:
            node = getattr(node, part)
        setattr(node, leaf, value)
    return cfg


def _synthetic_cfg(*opts):
    cfg = get_cfg()
    cfg.merge_from_file(str(SYNTHETIC_RANKSEG))
    cfg.merge_from_list(list(opts))
    return cfg


def _model_kwargs(topk):
    """Explicit constructor arguments of a mask-classification model with RankSeg (K = 5)."""
    return dict(backbone=nn.Module(), sem_seg_head=nn.Module(), criterion=nn.Module(), num_classes=5, num_queries=3,
                size_divisibility=0, pixel_mean=[0.0] * 3, pixel_std=[1.0] * 3,
                ml_head=MultiLabelHead(5, 8, 16, 2, 32, 0.0, False), ml_norm=nn.LayerNorm(topk + 1), ml_topk=topk)


@pytest.mark.parametrize("topk, expected", [
    (0, "MODEL.RANKSEG.TOPK=0 must lie in [1, MODEL.SEM_SEG_HEAD.NUM_CLASSES=5]: the number of categories RankSeg "
        "keeps per image (or clip); set 1 <= TOPK <= 5."),
    (6, TOPK_6_OF_5),
])
def test_one_topk_check_message(topk, expected):
    with pytest.raises(ConfigError) as err:
        check_topk(topk, 5)
    assert str(err.value) == expected
    check_topk(1, 5)
    check_topk(5, 5)


def test_every_entry_point_raises_the_same_topk_error():
    """Config (validate_model_config, build_model), explicit constructor arguments and a tensor: one message."""
    cfg = _synthetic_cfg("MODEL.SEM_SEG_HEAD.NUM_CLASSES", 5, "MODEL.RANKSEG.TOPK", 6)
    entry_points = [
        lambda: check_rankseg_config(cfg),
        lambda: validate_model_config(cfg),
        lambda: build_model(cfg),
        lambda: check_rankseg_args(nn.Identity(), nn.Identity(), 6, 5),
        lambda: MaskFormer(**_model_kwargs(6)),
        lambda: VideoMaskFormer(num_frames=2, **_model_kwargs(6)),
        lambda: select_topk(torch.zeros(2, 5), 6),
    ]
    for call in entry_points:
        with pytest.raises(ConfigError) as err:
            call()
        assert str(err.value) == TOPK_6_OF_5
    assert isinstance(err.value, ValueError)  # callers catching ValueError still catch it


def test_rankseg_config_checks_name_the_keys():
    check_rankseg_config(_rankseg_cfg(**{"MODEL.RANKSEG.TOPK": 0, "MODEL.RANKSEG.FLAG": False}))  # RankSeg off
    with pytest.raises(ConfigError, match=r"^MODEL\.RANKSEG\.HIDDEN_DIM=0 must be positive\.$"):
        check_rankseg_config(_rankseg_cfg(**{"MODEL.RANKSEG.HIDDEN_DIM": 0}))
    with pytest.raises(ConfigError, match=r"HIDDEN_DIM \(512\) equal to MODEL\.MASK_FORMER\.HIDDEN_DIM \(256\)"):
        check_rankseg_config(_rankseg_cfg(**{"MODEL.RANKSEG.SHARE_EMBEDDING": True}))
    check_rankseg_config(_rankseg_cfg(**{"MODEL.RANKSEG.SHARE_EMBEDDING": True, "MODEL.RANKSEG.HIDDEN_DIM": 256}))


@pytest.mark.parametrize("decoder, smallest", [("StandardTransformerDecoder", 3),
                                               ("MultiScaleMaskedTransformerDecoder", 4)])
def test_decoder_depth_check_follows_the_query_layer(decoder, smallest):
    """The head reads query_feature[QUERY_LAYER]: the decoder needs QUERY_LAYER + 1 transformer layers."""
    assert QUERY_LAYER == 2
    cfg = _rankseg_cfg(**{"MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME": decoder,
                          "MODEL.MASK_FORMER.DEC_LAYERS": smallest})
    check_rankseg_config(cfg)
    cfg.MODEL.MASK_FORMER.DEC_LAYERS = smallest - 1
    with pytest.raises(ConfigError) as err:
        check_rankseg_config(cfg)
    assert str(err.value) == (
        f"MODEL.MASK_FORMER.DEC_LAYERS={smallest - 1} is too small for RankSeg with {decoder}: the multi-label head "
        f"reads the queries of decoder layer 3; use DEC_LAYERS >= {smallest}."
    )
    cfg.MODEL.META_ARCHITECTURE = "SomePerPixelSegmenter"  # no decoder queries: no depth check
    check_rankseg_config(cfg)


@pytest.mark.slow
def test_config_does_not_import_modeling():
    code = ("import sys, mask2former_rankseg.config; "
            "print(sorted(m for m in sys.modules if m.startswith('mask2former_rankseg.modeling')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_rankseg_kwargs_from_config():
    assert rankseg_kwargs_from_config(_rankseg_cfg(**{"MODEL.RANKSEG.FLAG": False}), 32) == {}
    cfg = _rankseg_cfg(**{"MODEL.RANKSEG.HIDDEN_DIM": 64, "MODEL.RANKSEG.LOSS_WEIGHT": 2.5})
    kwargs = rankseg_kwargs_from_config(cfg, 32)
    assert sorted(kwargs) == ["ml_head", "ml_loss", "ml_loss_weight", "ml_norm", "ml_share_embedding", "ml_topk"]
    head = kwargs["ml_head"]
    assert isinstance(head, MultiLabelHead)
    assert (head.proj_dec.in_features, head.hidden_dim, head.num_classes) == (32, 64, 5)
    assert isinstance(kwargs["ml_norm"], nn.LayerNorm) and kwargs["ml_norm"].normalized_shape == (4,)  # TOPK + 1
    loss = kwargs["ml_loss"]
    assert isinstance(loss, AsymmetricLoss)
    assert (loss.gamma_neg, loss.gamma_pos, loss.clip) == (2, 0, 0.05)
    assert (kwargs["ml_loss_weight"], kwargs["ml_topk"], kwargs["ml_share_embedding"]) == (2.5, 3, False)
    per_pixel = pixel_rankseg_kwargs_from_config(cfg, 32)  # its LayerNorm(TOPK) is the pixel classifier's
    assert sorted(per_pixel) == ["ml_head", "ml_in_feature", "ml_loss", "ml_loss_weight", "ml_share_embedding",
                                 "ml_topk"]
    head = per_pixel["ml_head"]
    assert isinstance(head.proj_dec, SeparableProjection) and head.pooling.output_size == 16
    assert (head.proj_dec.in_features, head.hidden_dim, per_pixel["ml_in_feature"]) == (32, 64, "res5")


def test_multilabel_loss_choice():
    """MODEL.RANKSEG.ML_LOSS: the asymmetric loss by default, mean BCE-with-logits with "bce" (upstream's Segmenter
    head default), checked on a hand case; an unknown name is refused naming the key."""
    logits, present = torch.tensor([[0.0, 2.0], [-1.0, 0.5]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    bce = build_multilabel_loss("bce")
    by_hand = -(math.log(0.5) + math.log(1 - 1 / (1 + math.exp(-2.0))) + math.log(1 - 1 / (1 + math.exp(1.0)))
                + math.log(1 / (1 + math.exp(-0.5)))) / 4
    assert float(bce(logits, present)) == pytest.approx(by_hand)
    assert isinstance(build_multilabel_loss("asymmetric"), AsymmetricLoss)
    cfg = _rankseg_cfg(**{"MODEL.RANKSEG.ML_LOSS": "bce"})
    assert isinstance(rankseg_kwargs_from_config(cfg, 32)["ml_loss"], nn.BCEWithLogitsLoss)
    cfg.MODEL.RANKSEG.ML_LOSS = "focal"
    with pytest.raises(ConfigError, match="MODEL.RANKSEG.ML_LOSS='focal'"):
        check_rankseg_config(cfg)
    with pytest.raises(ConfigError, match="MODEL.RANKSEG.ML_LOSS"):
        build_multilabel_loss("focal")


class _RecordingHead(nn.Module):
    """Scores category c of image b as tokens[b, c].sum(): a known ranking from known tokens."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, tokens, class_embedding=None):
        self.seen.append((tokens, class_embedding))
        return tokens.sum(-1)


def _decoder_outputs():
    """B = 2 images, Q = 3 queries, K = 4 classes (+ no object), C = 4 channels, 4 decoder layers, 2 auxiliary."""
    torch.manual_seed(0)
    query_feature = [torch.randn(3, 2, 4) for _ in range(4)]
    return {"pred_logits": torch.randn(2, 3, 5), "query_feature": query_feature,
            "aux_outputs": [{"pred_logits": torch.randn(2, 3, 5)} for _ in range(2)]}


def test_ranking_reads_the_query_layer_and_ranks_every_layer():
    outputs = _decoder_outputs()
    before = [outputs["pred_logits"], *(aux["pred_logits"] for aux in outputs["aux_outputs"])]
    head, norm = _RecordingHead(), nn.LayerNorm(3)
    with torch.no_grad():
        norm.weight.uniform_()
        image_logits, topk_index = apply_oracle_and_ranking(outputs, present=None, use_gt=False, ml_head=head,
                                                            ml_norm=norm, topk=2)
    (tokens, embedding), = head.seen
    assert embedding is None
    assert torch.equal(tokens, outputs["query_feature"][2].permute(1, 2, 0))  # [Q, B, C] -> [B, C, Q]
    expected_logits = outputs["query_feature"][2].sum(0)  # [B, C] summed over queries
    assert torch.equal(image_logits, expected_logits)
    assert torch.equal(topk_index[:, :2], expected_logits.argsort(1, descending=True)[:, :2])
    assert topk_index[:, 2].tolist() == [4, 4]
    after = [outputs["pred_logits"], *(aux["pred_logits"] for aux in outputs["aux_outputs"])]
    for old, new in zip(before, after):
        assert new.shape == (2, 3, 3)
        torch.testing.assert_close(new, norm(gather_ranked(old, topk_index)), rtol=0, atol=0)


def test_oracle_suppresses_absent_categories_before_ranking():
    outputs = _decoder_outputs()
    logits = outputs["pred_logits"].clone()
    present = torch.tensor([[True, False, False, True], [False, True, False, False]])
    assert apply_oracle_and_ranking(outputs, present=present, use_gt=True, ml_head=None, ml_norm=None,
                                    topk=0) == (None, None)
    assert torch.equal(outputs["pred_logits"][0, :, [0, 3, 4]], logits[0, :, [0, 3, 4]])
    assert (outputs["pred_logits"][0, :, [1, 2]] == -100).all()
    assert (outputs["pred_logits"][1, :, [0, 2, 3]] == -100).all()
    assert torch.equal(outputs["pred_logits"][1, :, [1, 4]], logits[1, :, [1, 4]])
    with pytest.raises(ValueError, match="MODEL.RANKSEG.USE_GT .* needs 'instances'"):
        apply_oracle_and_ranking(_decoder_outputs(), present=None, use_gt=True, ml_head=None, ml_norm=None, topk=0)


def test_shared_embedding_reaches_the_head():
    outputs, head = _decoder_outputs(), _RecordingHead()
    embedding = torch.randn(4, 16)
    apply_oracle_and_ranking(outputs, present=None, use_gt=False, ml_head=head, ml_norm=nn.Identity(), topk=1,
                             class_embedding=embedding)
    assert head.seen[0][1] is embedding


def test_ranked_targets_and_multilabel_loss():
    targets = [{"labels": torch.tensor([1, 3, 0]), "masks": torch.arange(3.0).view(3, 1, 1)}]
    assert ranked_targets(targets, None, 4) is targets
    ranked = ranked_targets(targets, torch.tensor([[3, 1, 4]]), 4)
    assert ranked[0]["labels"].tolist() == [1, 0] and ranked[0]["masks"].flatten().tolist() == [0.0, 1.0]

    logits = torch.tensor([[2.0, -1.0, 0.5, 0.0]], dtype=torch.float64)
    present = torch.tensor([[True, False, False, True]])
    loss = AsymmetricLoss(gamma_neg=2, gamma_pos=0, clip=0.05)
    value = multilabel_loss(loss, logits, present, 10.0)
    p = torch.sigmoid(logits[0])
    neg = (1 - p + 0.05).clamp(max=1)
    by_hand = -(torch.log(p[0]) + torch.log(p[3]) + torch.log(neg[1]) * (1 - neg[1]) ** 2
                + torch.log(neg[2]) * (1 - neg[2]) ** 2) / 4 * 10.0
    torch.testing.assert_close(value, by_hand)


def test_multilabel_result_drops_the_no_object_column():
    logits = torch.tensor([0.1, 2.0, -1.0, 3.0])
    topk_index = select_topk(logits[None], 2)[0]
    assert topk_index.tolist() == [3, 1, 4]
    result = multilabel_result(logits, topk_index)
    assert sorted(result) == ["scores", "topk"]
    assert result["scores"] is logits and result["topk"].tolist() == [3, 1]


def test_model_multilabel_output_and_query_layer(tiny_model_opts):
    """A tiny Mask2Former + RankSeg: the head reads query_feature[2]; multilabel holds its logits and top-k."""
    model = build_model(_synthetic_cfg(*tiny_model_opts)).eval()
    seen = {}
    model.ml_head.register_forward_hook(lambda m, args, out: seen.update(tokens=args[0], logits=out))
    model.sem_seg_head.predictor.register_forward_hook(lambda m, args, out: seen.update(out=out))
    image = torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        (out,) = model([{"image": image}])
    torch.testing.assert_close(seen["tokens"], seen["out"]["query_feature"][QUERY_LAYER].permute(1, 2, 0),
                               rtol=0, atol=0)
    assert torch.equal(out["multilabel"]["scores"], seen["logits"][0])
    assert out["multilabel"]["topk"].tolist() == seen["logits"][0].argsort(descending=True)[:5].tolist()

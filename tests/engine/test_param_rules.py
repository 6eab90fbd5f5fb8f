"""``SOLVER.PARAM_RULES`` (mmcv's ``custom_keys``) and ``SOLVER.LAYER_DECAY_RATE`` (BEiT's layer-wise lr decay):
which parameter of a hand-made model gets which lr and weight decay, checked against hand computations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mask2former_rankseg.config import ConfigError, get_cfg
from mask2former_rankseg.engine.optim import build_optimizer, get_param_groups
from mask2former_rankseg.engine.param_rules import ParamRule, match_param_rule, parse_param_rules

SEGMENTER_RULES = [["pos_embed", 1.0, 0.0], ["cls_token", 1.0, 0.0], ["norm", 1.0, 0.0],
                   ["sem_seg_head.blocks.0.", 1.0, 100.0], ["sem_seg_head.ml_fc", 1.0, 100.0]]
"""Segmenter + RankSeg's ``paramwise_cfg.custom_keys`` (``decode_head.`` -> ``sem_seg_head.``)."""


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1 = nn.LayerNorm(2)
        self.fc = nn.Linear(2, 2)


class StandInViT(nn.Module):
    """A 3-block ViT-shaped backbone numbering its layers as BEiT's constructor does (the interface of the real
    ViT / BEiT backbones: ``layer_id(name relative to the backbone)`` and ``num_layers``)."""

    num_layers = 3

    def __init__(self):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 2))
        self.pos_embed = nn.Parameter(torch.zeros(1, 5, 2))
        self.patch_embed = nn.Conv2d(3, 2, 2)
        self.blocks = nn.ModuleList(Block() for _ in range(3))
        self.norm = nn.LayerNorm(2)

    def layer_id(self, name: str) -> int:
        if name in ("cls_token", "pos_embed") or name.startswith("patch_embed."):
            return 0
        if name.startswith("blocks."):
            return int(name.split(".")[1]) + 1
        return self.num_layers + 1


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList(Block() for _ in range(2))
        self.ml_fc = nn.Linear(2, 2)
        self.bn = nn.BatchNorm2d(2)  # mmcv ConvModule's name for its norm: "norm" does not match it


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = StandInViT()
        self.sem_seg_head = Head()
        self.ml_head = nn.Linear(2, 2)


def _groups(model=None, **kw):
    """{name: (lr, weight decay)} with neutral built-in rules (multipliers 1, every weight decay 0.01)."""
    args = dict(base_lr=0.1, weight_decay=0.01, weight_decay_norm=0.01, weight_decay_embed=0.01)
    args.update(kw)
    return {g["name"]: (g["lr"], g["weight_decay"]) for g in get_param_groups(model or Model(), **args)}


def test_segmenter_rules_longest_substring_wins():
    g = _groups(param_rules=SEGMENTER_RULES)
    assert g["backbone.pos_embed"] == g["backbone.cls_token"] == (0.1, 0.0)
    assert g["backbone.blocks.0.norm1.weight"] == g["backbone.norm.bias"] == (0.1, 0.0)
    assert g["backbone.blocks.0.fc.weight"] == g["backbone.patch_embed.weight"] == (0.1, 0.01)
    # "sem_seg_head.blocks.0." (22 characters) beats "norm" (4): block 0's LayerNorm gets decay x 100, as mmcv's
    assert g["sem_seg_head.blocks.0.norm1.weight"] == g["sem_seg_head.blocks.0.fc.bias"] == (0.1, pytest.approx(1.0))
    assert g["sem_seg_head.blocks.1.norm1.weight"] == (0.1, 0.0)
    assert g["sem_seg_head.blocks.1.fc.weight"] == (0.1, 0.01)
    assert g["sem_seg_head.ml_fc.weight"] == (0.1, pytest.approx(1.0))
    assert g["sem_seg_head.bn.weight"] == g["ml_head.weight"] == (0.1, 0.01)


def test_equal_lengths_go_alphabetically_and_list_order_does_not_matter():
    """"head." and "ml_fc" (5 characters each) both occur in "sem_seg_head.ml_fc.weight": "head." < "ml_fc"."""
    for rules in ([["ml_fc", 3.0, 1.0], ["head.", 2.0, 1.0]], [["head.", 2.0, 1.0], ["ml_fc", 3.0, 1.0]]):
        g = _groups(param_rules=rules)
        assert g["sem_seg_head.ml_fc.weight"][0] == pytest.approx(0.2)
        assert g["ml_head.weight"][0] == pytest.approx(0.2)  # "head." again
        assert g["backbone.norm.weight"][0] == 0.1  # no rule
    assert [r.key for r in parse_param_rules([["b", 1, 1], ["aa", 1, 1], ["a", 1, 1], ["ab", 1, 1]])] == \
        ["aa", "ab", "a", "b"]
    assert match_param_rule("x.norm.weight", parse_param_rules([["norm", 1, 0]])) == ParamRule("norm", 1.0, 0.0)
    assert match_param_rule("x.bn.weight", parse_param_rules([["norm", 1, 0]])) is None


def test_a_matching_rule_replaces_the_built_in_rules():
    """mmcv ignores its other rules for a custom key: a matched backbone parameter loses BACKBONE_MULTIPLIER and
    a matched norm gets WEIGHT_DECAY * decay_mult, not WEIGHT_DECAY_NORM; unmatched parameters keep them."""
    g = _groups(backbone_multiplier=0.5, weight_decay_norm=0.0, param_rules=[["blocks.1.norm1", 1.0, 2.0]])
    assert g["backbone.blocks.1.norm1.weight"] == (0.1, pytest.approx(0.02))
    assert g["backbone.blocks.0.norm1.weight"] == (pytest.approx(0.05), 0.0)
    assert g["backbone.blocks.0.fc.weight"] == (pytest.approx(0.05), 0.01)
    assert _groups(param_rules=[]) == _groups()  # no rules: the built-in rules alone


def test_layer_wise_decay_by_hand():
    """num_layers 3, rate 0.5: factor 0.5 ** (4 - layer): embeddings (layer 0) 1/16, blocks 0/1/2 (layers 1-3)
    1/8, 1/4, 1/2, the backbone's last norm and everything outside the backbone (layer 4) 1; rules apply first."""
    g = _groups(base_lr=1.0, layer_decay_rate=0.5, param_rules=[["blocks.1.fc", 3.0, 0.0], ["ml_head", 2.0, 1.0]])
    assert g["backbone.cls_token"] == g["backbone.pos_embed"] == g["backbone.patch_embed.bias"] == (0.0625, 0.01)
    assert [g[f"backbone.blocks.{i}.norm1.weight"][0] for i in range(3)] == [0.125, 0.25, 0.5]
    assert g["backbone.blocks.1.fc.weight"] == (0.75, 0.0)  # rule: 1.0 * 3, then the layer factor 1/4
    assert g["backbone.norm.weight"] == g["sem_seg_head.blocks.0.fc.weight"] == (1.0, 0.01)
    assert g["ml_head.weight"] == (2.0, 0.01)
    assert _groups(layer_decay_rate=1.0) == _groups()


def test_layer_decay_needs_a_backbone_that_numbers_its_layers():
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.LAYER_DECAY_RATE", 0.9])
    plain = nn.Module()
    plain.backbone = nn.Linear(2, 2)
    with pytest.raises(ConfigError, match="SOLVER.LAYER_DECAY_RATE=0.9.*Linear.*1.0"):
        build_optimizer(cfg, plain)
    with pytest.raises(ConfigError, match="LAYER_DECAY_RATE=0.0"):
        _groups(layer_decay_rate=0.0)
    broken = Model()
    broken.backbone.layer_id = lambda name: 7
    with pytest.raises(ValueError, match=r"layer_id\('cls_token'\) = 7, outside \[0, 4\]"):
        _groups(broken, layer_decay_rate=0.9)


@pytest.mark.parametrize("entry", [["norm", 1.0], ["", 1.0, 0.0], ["norm", -1.0, 0.0], ["norm", 1.0, "0"], "norm"])
def test_bad_rules_name_the_key(entry):
    with pytest.raises(ConfigError, match="SOLVER.PARAM_RULES entry"):
        parse_param_rules([entry])


def test_repeated_rule_is_refused():
    with pytest.raises(ConfigError, match=r"SOLVER.PARAM_RULES gives \['norm'\] more than once"):
        parse_param_rules([["norm", 1, 0], ["norm", 1, 1]])


def test_config_rules_reach_the_optimizer():
    """From YAML-like values (lists of lists) through build_optimizer: AdamW groups carry their weight decay."""
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.BASE_LR", 0.1, "SOLVER.WEIGHT_DECAY", 0.01, "SOLVER.WEIGHT_DECAY_NORM", 0.01,
                         "SOLVER.BACKBONE_MULTIPLIER", 1.0, "SOLVER.PARAM_RULES", SEGMENTER_RULES])
    model = Model()
    opt = build_optimizer(cfg, model)
    decay = {id(g["params"][0]): g["weight_decay"] for g in opt.param_groups}
    assert decay[id(model.backbone.pos_embed)] == 0.0
    assert decay[id(model.sem_seg_head.ml_fc.weight)] == pytest.approx(1.0)
    assert decay[id(model.sem_seg_head.blocks[1].fc.weight)] == 0.01

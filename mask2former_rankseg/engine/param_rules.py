"""Per-parameter optimiser settings of mmcv's optimiser constructors, from the config: substring rules
(``SOLVER.PARAM_RULES``, mmcv's ``paramwise_cfg.custom_keys``) and BEiT's layer-wise learning-rate decay
(``SOLVER.LAYER_DECAY_RATE``, its ``LayerDecayOptimizerConstructor``). ``optim.get_param_groups`` applies them.

Facts kept from upstream:

* mmcv's ``DefaultOptimizerConstructor`` sorts the custom keys alphabetically, then by length, longest first
  (``sorted(sorted(keys), key=len, reverse=True)``), and the first key that is a substring of the parameter's
  name decides: lr ``base_lr * lr_mult`` and weight decay ``base_wd * decay_mult`` (both default 1), its other
  rules (norm, bias, depthwise) being ignored for that parameter. mmcv matches ``f"{prefix}.{name}"``, which is
  the full dotted name except for parameters of the root module (a leading dot); here the full name is matched.
* BEiT's constructor gives ``backbone.cls_token`` / ``mask_token`` / ``pos_embed`` and ``backbone.patch_embed.*``
  layer 0, ``backbone.blocks.{i}.*`` layer ``i + 1`` and every other parameter (the heads included) layer
  ``num_layers + 1``, and scales each lr by ``rate ** (num_layers + 1 - layer_id)``: the head keeps the base lr,
  the last block gets ``rate``, the embeddings ``rate ** (num_layers + 1)``.
"""

from __future__ import annotations

from typing import Callable, List, NamedTuple, Optional, Sequence

from torch import nn

from ..config import ConfigError

__all__ = ["ParamRule", "layer_decay_scale", "match_param_rule", "parse_param_rules"]


class ParamRule(NamedTuple):
    """One ``SOLVER.PARAM_RULES`` entry: parameters whose full name contains ``key`` get ``BASE_LR * lr_mult`` and
    ``WEIGHT_DECAY * decay_mult``."""

    key: str
    lr_mult: float
    decay_mult: float


def parse_param_rules(entries: Sequence) -> List[ParamRule]:
    """``SOLVER.PARAM_RULES`` (``[substring, lr_mult, decay_mult]`` entries) -> rules in mmcv's order of precedence:
    the longest substring first, equal lengths alphabetically.

    Raises:
        ConfigError: naming the bad entry (not three values, an empty substring, a negative or non-numeric
            multiplier, a substring given twice).
    """
    rules = []
    for entry in entries:
        ok = isinstance(entry, (list, tuple)) and len(entry) == 3 and isinstance(entry[0], str) and entry[0]
        ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in entry[1:])
        if not ok:
            raise ConfigError(
                f"SOLVER.PARAM_RULES entry {entry!r}: each entry is [substring, lr_mult, decay_mult] with a non-empty "
                "substring and non-negative multipliers, e.g. ['norm', 1.0, 0.0]."
            )
        rules.append(ParamRule(entry[0], float(entry[1]), float(entry[2])))
    keys = [r.key for r in rules]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise ConfigError(f"SOLVER.PARAM_RULES gives {repeated} more than once; give each substring one entry.")
    return sorted(sorted(rules), key=lambda r: len(r.key), reverse=True)


def match_param_rule(name: str, rules: Sequence[ParamRule]) -> Optional[ParamRule]:
    """The rule deciding parameter ``name`` (its full dotted name): the first of ``rules`` (in
    :func:`parse_param_rules`' order) whose key occurs in it, or None."""
    return next((rule for rule in rules if rule.key in name), None)


def layer_decay_scale(model: nn.Module, rate: float) -> Callable[[str], float]:
    """BEiT's layer-wise lr factor, as a function of a parameter's full name.

    ``model.backbone`` provides ``num_layers`` and ``layer_id(name)`` (``name`` relative to the backbone, in
    ``[0, num_layers + 1]``); parameters outside the backbone have layer ``num_layers + 1``. The factor is
    ``rate ** (num_layers + 1 - layer_id)``.

    Raises:
        ConfigError: when ``rate`` is not positive or the backbone has no ``layer_id`` / ``num_layers``.
        ValueError: when the backbone returns a layer id outside ``[0, num_layers + 1]``.
    """
    if rate <= 0:
        raise ConfigError(f"SOLVER.LAYER_DECAY_RATE={rate} must be positive (1.0 turns layer-wise decay off).")
    backbone = getattr(model, "backbone", None)
    if backbone is None or not callable(getattr(backbone, "layer_id", None)) or not hasattr(backbone, "num_layers"):
        kind = type(backbone).__name__ if backbone is not None else f"{type(model).__name__} (no backbone)"
        raise ConfigError(
            f"SOLVER.LAYER_DECAY_RATE={rate} needs a backbone that numbers its layers (layer_id(name) and "
            f"num_layers, e.g. ViT / BEiT); {kind} has none. Set SOLVER.LAYER_DECAY_RATE 1.0."
        )
    top = int(backbone.num_layers) + 1

    def scale(name: str) -> float:
        layer = top
        if name.startswith("backbone."):
            relative = name[len("backbone."):]
            layer = int(backbone.layer_id(relative))
            if not 0 <= layer <= top:
                raise ValueError(f"{type(backbone).__name__}.layer_id({relative!r}) = {layer}, outside [0, {top}] "
                                 f"(num_layers = {top - 1}).")
        return rate ** (top - layer)

    return scale

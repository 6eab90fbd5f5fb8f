"""Pretrained backbone files (ImageNet, timm or official releases, named as the backbone names its own
parameters) loaded into a whole model: their names get the model's ``backbone.`` prefix, and the backbone converts
foreign layouts (:meth:`~mask2former_rankseg.modeling.backbone.Backbone.adapt_state_dict`)."""

from __future__ import annotations

import logging
from typing import Dict

import torch
from torch import nn

from ...modeling.backbone import Backbone

__all__ = ["BACKBONE_PREFIX", "route_backbone_weights"]

logger = logging.getLogger(__name__)

BACKBONE_PREFIX = "backbone."


def route_backbone_weights(model: nn.Module, state: Dict[str, torch.Tensor], *, heuristics: bool, source: str
                           ) -> Dict[str, torch.Tensor]:
    """``state`` with its backbone weights named and laid out as ``model`` needs them.

    For a model whose ``backbone`` is a :class:`Backbone`:

    * a file sharing a key with the model (a whole-model checkpoint): its ``backbone.*`` part goes through the
      backbone's ``adapt_state_dict`` (names relative to the backbone), the rest is unchanged;
    * a file sharing none (a pretrained backbone file in the backbone's own names, e.g. a timm ViT state dict):
      all of it goes through ``adapt_state_dict``; then, unless suffix matching was asked for (which adds the
      prefix itself), the keys naming backbone tensors get ``backbone.`` and the rest (classifier, ...) stay as they
      are, to be reported unexpected.

    Any other model (no ``backbone``, or not a :class:`Backbone`): ``state`` unchanged.
    """
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, Backbone):
        return state
    model_keys = set(model.state_dict())
    if any(k in model_keys for k in state):
        part = {k[len(BACKBONE_PREFIX):]: v for k, v in state.items() if k.startswith(BACKBONE_PREFIX)}
        if not part:
            return state
        rest = {k: v for k, v in state.items() if not k.startswith(BACKBONE_PREFIX)}
        return {**rest, **{BACKBONE_PREFIX + k: v for k, v in backbone.adapt_state_dict(part).items()}}
    state = backbone.adapt_state_dict(state)
    if heuristics:
        return state
    own = set(backbone.state_dict())
    routed = {(BACKBONE_PREFIX + k if k in own else k): v for k, v in state.items()}
    matched = sum(k in own for k in state)
    if matched:
        logger.info("%s names no model tensor but %d of its %d keys name tensors of the backbone (%s): read as a "
                    "pretrained backbone file, those load under 'backbone.'.", source, matched, len(state),
                    type(backbone).__name__)
    return routed

"""Builders from a config: the model and its registered parts."""

from __future__ import annotations

import logging
from typing import Dict, Optional

from torch import nn

from ..config import validate_config
from ..layers import ShapeSpec
from .rankseg import check_rankseg_config
from .registry import BACKBONE_REGISTRY, META_ARCH_REGISTRY, SEM_SEG_HEAD_REGISTRY

logger = logging.getLogger(__name__)


def build_backbone(cfg, input_shape: Optional[ShapeSpec] = None) -> nn.Module:
    """Build ``cfg.MODEL.BACKBONE.NAME`` for an input of ``len(PIXEL_MEAN)`` channels."""
    if input_shape is None:
        input_shape = ShapeSpec(channels=len(cfg.MODEL.PIXEL_MEAN))
    return BACKBONE_REGISTRY.get(cfg.MODEL.BACKBONE.NAME)(cfg, input_shape)


def build_sem_seg_head(cfg, input_shape: Dict[str, ShapeSpec]) -> nn.Module:
    """Build ``cfg.MODEL.SEM_SEG_HEAD.NAME`` on the backbone's output shapes."""
    return SEM_SEG_HEAD_REGISTRY.get(cfg.MODEL.SEM_SEG_HEAD.NAME).from_config(cfg, input_shape)


def validate_model_config(cfg) -> None:
    """:func:`~mask2former_rankseg.config.validate_config` plus the cross-key checks of the model's parts that
    live with them (RankSeg's: :func:`~.rankseg.check_rankseg_config`); raises ``ConfigError``."""
    validate_config(cfg)
    check_rankseg_config(cfg)


def build_model(cfg) -> nn.Module:
    """Build ``cfg.MODEL.META_ARCHITECTURE`` (on the CPU; move it with ``.to(cfg.MODEL.DEVICE)``) from a config
    that passes :func:`validate_model_config`."""
    validate_model_config(cfg)
    model = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE).from_config(cfg)
    logger.info("Built %s with %d parameters.", type(model).__name__, sum(p.numel() for p in model.parameters()))
    return model

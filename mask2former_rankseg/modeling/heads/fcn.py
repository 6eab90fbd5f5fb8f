"""The FCN head (``FCNHead``): convolutions and a pixel classifier on one backbone map — the auxiliary head of the
per-pixel models (mmseg's ``FCNHead`` with ``concat_input=False``), trained with its own cross-entropy."""

from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import nn

from ...config import ConfigError
from ...layers import ShapeSpec
from .common import ConvNormReLU, LinearPixelClassifier, check_in_features

__all__ = ["FCNHead", "build_aux_head"]


class FCNHead(nn.Module):
    """``convs`` (``num_convs`` 3x3 ConvNormReLU) -> Dropout2d -> ``conv_seg`` (1x1, K logits); mmseg's names.

    Args:
        in_channels: channels of ``in_feature``. channels: width of the convolutions (256 for the auxiliary head).
        num_classes: K. num_convs: >= 1. norm, dropout: as the main head's. in_feature: e.g. "res4".
    """

    def __init__(self, in_channels: int, channels: int, num_classes: int, *, num_convs: int, norm: str,
                 dropout: float, in_feature: str):
        super().__init__()
        if num_convs < 1:
            raise ValueError(f"FCNHead needs at least one convolution, got num_convs={num_convs}.")
        self.in_feature = in_feature
        self.convs = nn.Sequential(*(
            ConvNormReLU(in_channels if i == 0 else channels, channels, 3, padding=1, norm=norm)
            for i in range(num_convs)
        ))
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.conv_seg = LinearPixelClassifier(channels, num_classes)

    def forward(self, features: Dict[str, torch.Tensor]) -> torch.Tensor:
        """features: the backbone's maps -> logits [B, K, h, w] at ``in_feature``'s resolution."""
        return self.conv_seg(self.dropout(self.convs(features[self.in_feature])))


def build_aux_head(cfg, input_shape: Dict[str, ShapeSpec]) -> Optional[FCNHead]:
    """The auxiliary head named by MODEL.AUX_HEAD.NAME ("" for none, "FCNHead"), from MODEL.AUX_HEAD's keys (norm:
    MODEL.SEM_SEG_HEAD.NORM)."""
    aux = cfg.MODEL.AUX_HEAD
    if not aux.NAME:
        return None
    if aux.NAME != "FCNHead":
        raise ConfigError(f"MODEL.AUX_HEAD.NAME={aux.NAME!r}: the auxiliary heads are 'FCNHead' or '' (none).")
    check_in_features(aux.IN_FEATURES, input_shape, "MODEL.AUX_HEAD.IN_FEATURES")
    if len(aux.IN_FEATURES) != 1:
        raise ConfigError(f"FCNHead reads one map; MODEL.AUX_HEAD.IN_FEATURES={list(aux.IN_FEATURES)}.")
    feature = aux.IN_FEATURES[0]
    return FCNHead(input_shape[feature].channels, aux.CONVS_DIM, cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
                   num_convs=aux.NUM_CONVS, norm=cfg.MODEL.SEM_SEG_HEAD.NORM, dropout=aux.DROPOUT,
                   in_feature=feature)

"""Pieces the per-pixel heads share: convolution + norm + ReLU named as mmcv's ``ConvModule``, the pixel
classifiers (a 1x1 convolution over every category, or RankSeg's selected-label classifier), and the check that a
head's input features exist."""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ...config import ConfigError
from ...layers import ShapeSpec, c2_msra_fill, get_norm
from ..rankseg import SelectedLabelClassifier

__all__ = ["ConvNormReLU", "LinearPixelClassifier", "build_pixel_classifier", "check_in_features"]


class ConvNormReLU(nn.Module):
    """``conv`` (no bias when normed), ``bn`` (the configured norm, e.g. SyncBN), ReLU: mmcv ``ConvModule``'s
    structure, names and initialisation (He normal, fan-out; norm weight 1, bias 0)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, padding: int = 0,
                 dilation: int = 1, norm: str = "BN"):
        super().__init__()
        bn = get_norm(norm, out_channels)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation,
                              bias=bn is None)
        c2_msra_fill(self.conv)
        self.bn = bn if bn is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class LinearPixelClassifier(nn.Conv2d):
    """A 1x1 convolution to K logits per pixel (mmseg's ``conv_seg``; normal init, std 0.01, bias 0):
    [B, C, H, W] -> [B, K, H, W]."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__(channels, num_classes, 1)
        nn.init.normal_(self.weight, std=0.01)
        nn.init.zeros_(self.bias)

    def forward(self, feat: torch.Tensor, topk_index: Optional[torch.Tensor] = None) -> torch.Tensor:
        if topk_index is not None:
            raise ValueError("LinearPixelClassifier scores every category; a RankSeg selection needs "
                             "SelectedLabelClassifier (MODEL.RANKSEG.FLAG True).")
        return super().forward(feat)


def build_pixel_classifier(cfg, channels: int) -> nn.Module:
    """RankSeg's :class:`SelectedLabelClassifier` with ``MODEL.RANKSEG.FLAG`` (TOPK categories per image), else
    :class:`LinearPixelClassifier` over MODEL.SEM_SEG_HEAD.NUM_CLASSES."""
    num_classes = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
    if cfg.MODEL.RANKSEG.FLAG:
        return SelectedLabelClassifier(num_classes, channels, cfg.MODEL.RANKSEG.TOPK)
    return LinearPixelClassifier(channels, num_classes)


def check_in_features(in_features: Sequence[str], input_shape: Dict[str, ShapeSpec], key: str) -> None:
    """One clear error when a head reads a feature the backbone does not give.

    Raises:
        ConfigError: naming ``key`` (e.g. ``MODEL.SEM_SEG_HEAD.IN_FEATURES``) and the backbone's features.
    """
    missing = [f for f in in_features if f not in input_shape]
    if missing:
        raise ConfigError(
            f"{key}={list(in_features)}: the backbone gives no {missing}; it gives {sorted(input_shape)} (set "
            "MODEL.RESNETS.OUT_FEATURES, or the backbone's OUT_FEATURES, to include them)."
        )

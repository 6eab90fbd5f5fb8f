"""DeepLabV3's head (``DeepLabV3Head``): atrous spatial pyramid pooling, a 3x3 bottleneck, dropout and a pixel
classifier, on the backbone's last map — mmseg's ``ASPPHead`` (and RankSeg's ``ASPPRankSegHead``) structure under
detectron2's head name and config keys.

Unlike detectron2's own DeepLabV3 head (a 1x1 projection of the ASPP branches), mmseg's fuses them with a 3x3
convolution (``bottleneck``); RankSeg's DeepLabV3 numbers are mmseg's, so that is what is built here.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ...layers import ShapeSpec
from ..registry import SEM_SEG_HEAD_REGISTRY
from .common import ConvNormReLU, build_pixel_classifier, check_in_features

__all__ = ["DeepLabV3Head"]


@SEM_SEG_HEAD_REGISTRY.register()
class DeepLabV3Head(nn.Module):
    """ASPP (image pooling, a 1x1 branch and one dilated 3x3 branch per rate) -> concat -> 3x3 ``bottleneck`` ->
    Dropout2d -> ``predictor``.

    Parameter names are mmseg's (``image_pool.1``, ``aspp_modules.{i}``, ``bottleneck``; ``conv``/``bn`` inside),
    so an mmseg ``decode_head.*`` checkpoint maps onto ``sem_seg_head.*`` by prefix (``conv_seg`` ->
    ``predictor``).

    Args:
        in_channels: channels of the input map ``in_feature``.
        channels: width of every branch and of the bottleneck (512 in RankSeg's configs).
        dilations: rates of the dilated 3x3 branches (12, 24, 36); the 1x1 branch is always there.
        norm: norm of every convolution ("SyncBN", "BN", "GN", "" ...).
        dropout: Dropout2d probability before the classifier.
        predictor: pixel classifier ``(feat [B, C, h, w], topk_index [B, k] or None) -> logits``.
        in_feature: the backbone map read (e.g. "res5").
    """

    def __init__(self, in_channels: int, channels: int, *, dilations: Sequence[int], norm: str, dropout: float,
                 predictor: nn.Module, in_feature: str):
        super().__init__()
        self.in_feature = in_feature
        self.image_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), ConvNormReLU(in_channels, channels, 1, norm=norm))
        rates = (1, *dilations)
        self.aspp_modules = nn.ModuleList(
            ConvNormReLU(in_channels, channels, 1 if d == 1 else 3, padding=0 if d == 1 else d, dilation=d,
                         norm=norm)
            for d in rates
        )
        self.bottleneck = ConvNormReLU((len(rates) + 1) * channels, channels, 3, padding=1, norm=norm)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.predictor = predictor

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]) -> DeepLabV3Head:
        """MODEL.SEM_SEG_HEAD: IN_FEATURES (one map), ASPP_CHANNELS, ASPP_DILATIONS, ASPP_DROPOUT, NORM."""
        head = cfg.MODEL.SEM_SEG_HEAD
        check_in_features(head.IN_FEATURES, input_shape, "MODEL.SEM_SEG_HEAD.IN_FEATURES")
        if len(head.IN_FEATURES) != 1:
            raise ValueError(f"DeepLabV3Head reads one map; MODEL.SEM_SEG_HEAD.IN_FEATURES={list(head.IN_FEATURES)}.")
        in_feature = head.IN_FEATURES[0]
        return cls(input_shape[in_feature].channels, head.ASPP_CHANNELS, dilations=head.ASPP_DILATIONS,
                   norm=head.NORM, dropout=head.ASPP_DROPOUT,
                   predictor=build_pixel_classifier(cfg, head.ASPP_CHANNELS), in_feature=in_feature)

    def forward(self, features: Dict[str, torch.Tensor], topk_index: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        Args:
            features: the backbone's maps; ``in_feature`` [B, C_in, h, w] is read.
            topk_index: [B, k] RankSeg's selection (with a selected-label predictor), else None.
        Returns:
            logits [B, K, h, w] (or [B, k, h, w] over the selection, in rank order).
        """
        x = features[self.in_feature]
        pooled = F.interpolate(self.image_pool(x), size=x.shape[-2:], mode="bilinear", align_corners=False)
        fused = self.bottleneck(torch.cat([pooled, *(branch(x) for branch in self.aspp_modules)], dim=1))
        feat = self.dropout(fused)
        return self.predictor(feat) if topk_index is None else self.predictor(feat, topk_index)

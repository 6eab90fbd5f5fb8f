"""UPerNet's head (``UPerHead``): a pyramid pooling module on the coarsest map, an FPN over all the maps and a 3x3
fusion of every level — mmseg's ``UPerHead`` structure and parameter names, under the registry of detectron2's
semantic heads, ending with the per-pixel heads' ``predictor`` (so RankSeg's selected-label classifier plugs in as
for ``DeepLabV3Head``)."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ...config import ConfigError
from ...layers import ShapeSpec
from ..registry import SEM_SEG_HEAD_REGISTRY
from .common import ConvNormReLU, build_pixel_classifier, check_in_features

__all__ = ["PPM", "UPerHead"]


def _resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize, ``align_corners`` False (mmseg's ``resize`` as UPerNet's configs call it)."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class PPM(nn.ModuleList):
    """Pyramid pooling (PSPNet's, mmseg's names): one ``Sequential(AdaptiveAvgPool2d(s), ConvNormReLU 1x1)`` per
    pool scale ``s``, each output upsampled back to the input's size.

    Args:
        pool_scales: output sides of the poolings (1, 2, 3, 6). in_channels, channels: of the 1x1 convolutions.
        norm: their norm.
    """

    def __init__(self, pool_scales: Sequence[int], in_channels: int, channels: int, *, norm: str):
        super().__init__(
            nn.Sequential(nn.AdaptiveAvgPool2d(scale), ConvNormReLU(in_channels, channels, 1, norm=norm))
            for scale in pool_scales
        )

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        """x [B, C_in, h, w] -> one [B, channels, h, w] map per pool scale."""
        return [_resize(branch(x), x.shape[-2:]) for branch in self]


@SEM_SEG_HEAD_REGISTRY.register()
class UPerHead(nn.Module):
    """UPerNet: PPM on the last map -> ``bottleneck`` (3x3); ``lateral_convs`` (1x1) on the other maps, added top
    down (each coarser level upsampled to the next finer one) and smoothed by ``fpn_convs`` (3x3); every level
    upsampled to the finest, concatenated and fused by ``fpn_bottleneck`` (3x3) -> Dropout2d -> ``predictor``.

    Parameter names are mmseg's (``psp_modules.{i}.1``, ``bottleneck``, ``lateral_convs.{i}``, ``fpn_convs.{i}``,
    ``fpn_bottleneck``; ``conv``/``bn`` inside), so an mmseg ``decode_head.*`` checkpoint maps onto ``sem_seg_head.*``
    by prefix (``conv_seg`` -> ``predictor``).

    Args:
        in_channels: channels of the ``in_features`` maps, finest first (e.g. Swin-B's 128, 256, 512, 1024).
        channels: width of every convolution of the head (512 in UPerNet's configs).
        pool_scales: the PPM's (1, 2, 3, 6).
        norm: norm of every convolution ("SyncBN", "BN", "GN", "" ...).
        dropout: Dropout2d probability before the classifier.
        predictor: pixel classifier ``(feat [B, channels, h, w], topk_index [B, k] or None) -> logits``.
        in_features: the backbone maps read, finest first (e.g. res2 .. res5); the output has the first one's stride.
    """

    def __init__(self, in_channels: Sequence[int], channels: int, *, pool_scales: Sequence[int], norm: str,
                 dropout: float, predictor: nn.Module, in_features: Sequence[str]):
        super().__init__()
        if len(in_channels) != len(in_features) or not in_features:
            raise ValueError(f"UPerHead needs one channel count per input map, got in_channels={list(in_channels)} "
                             f"for in_features={list(in_features)}.")
        self.in_features = list(in_features)
        self.psp_modules = PPM(pool_scales, in_channels[-1], channels, norm=norm)
        self.bottleneck = ConvNormReLU(in_channels[-1] + len(pool_scales) * channels, channels, 3, padding=1,
                                       norm=norm)
        self.lateral_convs = nn.ModuleList(ConvNormReLU(c, channels, 1, norm=norm) for c in in_channels[:-1])
        self.fpn_convs = nn.ModuleList(
            ConvNormReLU(channels, channels, 3, padding=1, norm=norm) for _ in in_channels[:-1]
        )
        self.fpn_bottleneck = ConvNormReLU(len(in_channels) * channels, channels, 3, padding=1, norm=norm)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.predictor = predictor

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]) -> UPerHead:
        """MODEL.SEM_SEG_HEAD: IN_FEATURES (finest first), CONVS_DIM (the head's width), POOL_SCALES, NORM,
        DROPOUT."""
        head = cfg.MODEL.SEM_SEG_HEAD
        features = list(head.IN_FEATURES)
        check_in_features(features, input_shape, "MODEL.SEM_SEG_HEAD.IN_FEATURES")
        strides = [input_shape[f].stride for f in features]
        if not features or any(a >= b for a, b in zip(strides, strides[1:])):
            raise ConfigError(
                f"MODEL.SEM_SEG_HEAD.IN_FEATURES={features} (strides {strides}): UPerHead reads maps finest first, "
                "each coarser than the one before, e.g. ['res2', 'res3', 'res4', 'res5']."
            )
        if not head.POOL_SCALES or min(head.POOL_SCALES) < 1:
            raise ConfigError(f"MODEL.SEM_SEG_HEAD.POOL_SCALES={list(head.POOL_SCALES)} must be positive pooled "
                              "sizes, e.g. [1, 2, 3, 6].")
        return cls([input_shape[f].channels for f in features], head.CONVS_DIM, pool_scales=head.POOL_SCALES,
                   norm=head.NORM, dropout=head.DROPOUT, predictor=build_pixel_classifier(cfg, head.CONVS_DIM),
                   in_features=features)

    def forward(self, features: Dict[str, torch.Tensor], topk_index: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        Args:
            features: the backbone's maps; ``in_features`` [B, C_i, h_i, w_i] are read.
            topk_index: [B, k] RankSeg's selection (with a selected-label predictor), else None.
        Returns:
            logits [B, K, h_0, w_0] at the first map's resolution (or [B, k, h_0, w_0] over the selection, in rank
            order).
        """
        inputs = [features[f] for f in self.in_features]
        top = inputs[-1]
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, inputs)]
        laterals.append(self.bottleneck(torch.cat([top, *self.psp_modules(top)], dim=1)))
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + _resize(laterals[i], laterals[i - 1].shape[-2:])
        outs = [conv(x) for conv, x in zip(self.fpn_convs, laterals)] + [laterals[-1]]
        size = outs[0].shape[-2:]
        fused = self.fpn_bottleneck(torch.cat([outs[0], *(_resize(x, size) for x in outs[1:])], dim=1))
        feat = self.dropout(fused)
        return self.predictor(feat) if topk_index is None else self.predictor(feat, topk_index)

"""MaskFormer's pixel decoders: ``BasePixelDecoder`` (an FPN) and ``TransformerEncoderPixelDecoder`` (the same FPN
with a transformer encoder on its coarsest level).

Module names are upstream's: ``adapter_{k}`` (lateral 1x1 convs, all levels but the coarsest), ``layer_{k}``
(3x3 output convs), ``mask_features`` (3x3 conv), and for the encoder variant ``input_proj``, ``transformer``
(``encoder.layers.{i}``) and ``pe_layer``.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from ...layers import Conv2d, ShapeSpec, c2_xavier_fill, get_norm
from ..registry import PIXEL_DECODER_REGISTRY
from ..transformer_decoder.position_encoding import PositionEmbeddingSine
from ..transformer_decoder.transformer import TransformerEncoder, TransformerEncoderLayer, xavier_init_matrices

NUM_MULTI_SCALE_LEVELS = 3
"""How many FPN outputs (coarsest first) are reported as ``multi_scale_features``."""


def _output_conv(in_channels: int, conv_dim: int, norm: str) -> Conv2d:
    conv = Conv2d(in_channels, conv_dim, kernel_size=3, stride=1, padding=1, bias=norm == "",
                  norm=get_norm(norm, conv_dim), activation=F.relu)
    c2_xavier_fill(conv)
    return conv


@PIXEL_DECODER_REGISTRY.register()
class BasePixelDecoder(nn.Module):
    """Top-down FPN over the backbone features (nearest upsampling, as FPN), ending in ``mask_features``.

    Args:
        input_shape: the features used, name -> ShapeSpec (sorted here by stride, finest first).
        conv_dim: channels of every FPN level. mask_dim: channels of ``mask_features``.
        norm: norm of the FPN convs ("GN", "BN", "" ...); no conv bias when a norm is used.
    """

    def __init__(self, input_shape: Dict[str, ShapeSpec], *, conv_dim: int, mask_dim: int, norm: str = ""):
        super().__init__()
        if not input_shape:
            raise ValueError("BasePixelDecoder: no input features (MODEL.SEM_SEG_HEAD.IN_FEATURES is empty?).")
        ordered = sorted(input_shape.items(), key=lambda kv: kv[1].stride)
        self.in_features = [k for k, _ in ordered]
        channels = [v.channels for _, v in ordered]
        lateral_convs: List[Optional[nn.Module]] = []
        output_convs: List[nn.Module] = []
        for idx, in_channels in enumerate(channels):
            coarsest = idx == len(channels) - 1
            if coarsest:
                lateral = None
                output = _output_conv(in_channels, conv_dim, norm)
            else:
                lateral = Conv2d(in_channels, conv_dim, kernel_size=1, bias=norm == "", norm=get_norm(norm, conv_dim))
                c2_xavier_fill(lateral)
                self.add_module(f"adapter_{idx + 1}", lateral)
                output = _output_conv(conv_dim, conv_dim, norm)
            self.add_module(f"layer_{idx + 1}", output)
            lateral_convs.append(lateral)
            output_convs.append(output)
        # coarsest first, the order of the top-down pass; plain lists so the modules keep their upstream names
        self.lateral_convs = lateral_convs[::-1]
        self.output_convs = output_convs[::-1]
        self.mask_dim = mask_dim
        self.mask_features = Conv2d(conv_dim, mask_dim, kernel_size=3, stride=1, padding=1)
        c2_xavier_fill(self.mask_features)
        self.maskformer_num_feature_levels = NUM_MULTI_SCALE_LEVELS

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]) -> BasePixelDecoder:
        return cls(_head_inputs(cfg, input_shape), **_fpn_kwargs(cfg))

    def _coarsest(self, x: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """FPN output of the coarsest level and what the transformer decoder may read from it (None here)."""
        return self.output_convs[0](x), None

    def forward_features(self, features: Dict[str, torch.Tensor]
                         ) -> Tuple[torch.Tensor, Optional[torch.Tensor], List[torch.Tensor]]:
        """
        Args:
            features: backbone maps by name, [B, C_k, H/stride_k, W/stride_k], for every name in ``in_features``.
        Returns:
            mask_features [B, mask_dim, H/s, W/s] (s: the finest stride), transformer_encoder_features (None, or the
            encoder output [B, conv_dim, h, w] of :class:`TransformerEncoderPixelDecoder`), multi_scale_features
            (the first 3 FPN outputs [B, conv_dim, h, w], coarsest first).
        """
        missing = [name for name in self.in_features if name not in features]
        if missing:
            raise KeyError(f"{type(self).__name__}: features {missing} missing from the input (got "
                           f"{sorted(features)}); the backbone must return MODEL.SEM_SEG_HEAD.IN_FEATURES.")
        multi_scale = []
        encoder_features = None
        y = None
        for idx, name in enumerate(self.in_features[::-1]):
            x = features[name]
            if idx == 0:
                y, encoder_features = self._coarsest(x)
            else:
                lateral = self.lateral_convs[idx](x)
                y = self.output_convs[idx](lateral + F.interpolate(y, size=lateral.shape[-2:], mode="nearest"))
            if len(multi_scale) < self.maskformer_num_feature_levels:
                multi_scale.append(y)
        return self.mask_features(y), encoder_features, multi_scale

    def forward(self, features: Dict[str, torch.Tensor]):
        """Same as :meth:`forward_features`."""
        return self.forward_features(features)


class TransformerEncoderOnly(nn.Module):
    """DETR's encoder on a flattened feature map (no decoder)."""

    def __init__(self, d_model: int = 512, nhead: int = 8, num_encoder_layers: int = 6, dim_feedforward: int = 2048,
                 dropout: float = 0.1, activation: str = "relu", normalize_before: bool = False):
        super().__init__()
        layer = TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, activation, normalize_before)
        final_norm = nn.LayerNorm(d_model) if normalize_before else None
        self.encoder = TransformerEncoder(layer, num_encoder_layers, final_norm)
        xavier_init_matrices(self)
        self.d_model = d_model
        self.nhead = nhead

    def forward(self, src: torch.Tensor, mask: Optional[torch.Tensor], pos_embed: torch.Tensor) -> torch.Tensor:
        """src, pos_embed: [B, C, H, W]; mask: [B, H, W] True on padding, or None. Returns [B, C, H, W]."""
        b, c, h, w = src.shape
        memory = self.encoder(src.flatten(2).permute(2, 0, 1), src_key_padding_mask=None if mask is None
                              else mask.flatten(1), pos=pos_embed.flatten(2).permute(2, 0, 1))
        return memory.permute(1, 2, 0).reshape(b, c, h, w)


@PIXEL_DECODER_REGISTRY.register()
class TransformerEncoderPixelDecoder(BasePixelDecoder):
    """:class:`BasePixelDecoder` whose coarsest level goes through a 1x1 projection (``input_proj``) and a
    transformer encoder first; the encoder output is what ``TRANSFORMER_IN_FEATURE: "transformer_encoder"`` reads.

    Args (besides :class:`BasePixelDecoder`'s):
        transformer_dropout, transformer_nheads, transformer_dim_feedforward, transformer_pre_norm: encoder layers.
        transformer_enc_layers: encoder depth (``SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS``).
    """

    def __init__(self, input_shape: Dict[str, ShapeSpec], *, transformer_dropout: float, transformer_nheads: int,
                 transformer_dim_feedforward: int, transformer_enc_layers: int, transformer_pre_norm: bool,
                 conv_dim: int, mask_dim: int, norm: str = ""):
        super().__init__(input_shape, conv_dim=conv_dim, mask_dim=mask_dim, norm=norm)
        coarsest_channels = max(input_shape.values(), key=lambda s: s.stride).channels
        self.input_proj = Conv2d(coarsest_channels, conv_dim, kernel_size=1)
        c2_xavier_fill(self.input_proj)
        self.transformer = TransformerEncoderOnly(
            d_model=conv_dim, dropout=transformer_dropout, nhead=transformer_nheads,
            dim_feedforward=transformer_dim_feedforward, num_encoder_layers=transformer_enc_layers,
            normalize_before=transformer_pre_norm,
        )
        self.pe_layer = PositionEmbeddingSine(conv_dim // 2, normalize=True)
        # the coarsest output conv now reads the encoder's conv_dim channels
        output = _output_conv(conv_dim, conv_dim, norm)
        self.add_module(f"layer_{len(self.in_features)}", output)
        self.output_convs[0] = output

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]) -> TransformerEncoderPixelDecoder:
        mf = cfg.MODEL.MASK_FORMER
        return cls(
            _head_inputs(cfg, input_shape),
            transformer_dropout=mf.DROPOUT,
            transformer_nheads=mf.NHEADS,
            transformer_dim_feedforward=mf.DIM_FEEDFORWARD,
            transformer_enc_layers=cfg.MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS,
            transformer_pre_norm=mf.PRE_NORM,
            **_fpn_kwargs(cfg),
        )

    def _coarsest(self, x: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        encoded = self.transformer(self.input_proj(x), None, self.pe_layer(x))
        return self.output_convs[0](encoded), encoded


def _head_inputs(cfg, input_shape: Dict[str, ShapeSpec]) -> Dict[str, ShapeSpec]:
    return {k: v for k, v in input_shape.items() if k in cfg.MODEL.SEM_SEG_HEAD.IN_FEATURES}


def _fpn_kwargs(cfg) -> Dict:
    head = cfg.MODEL.SEM_SEG_HEAD
    return {"conv_dim": head.CONVS_DIM, "mask_dim": head.MASK_DIM, "norm": head.NORM}

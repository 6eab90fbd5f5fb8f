"""``MSDeformAttnPixelDecoder``: deformable-attention encoder over the coarse levels + FPN to stride 4.

Module names follow upstream Mask2Former so official checkpoints load by name:
``input_proj.{i}.{0,1}``, ``transformer.level_embed``, ``transformer.encoder.layers.{i}.self_attn.*``,
``.norm1/.linear1/.linear2/.norm2``, ``mask_features``, ``adapter_{k}``, ``layer_{k}``.
"""

from __future__ import annotations

import contextlib
import copy
import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from ...layers import Conv2d, ShapeSpec, c2_xavier_fill, get_norm
from ...ops import MSDeformAttn
from ..registry import PIXEL_DECODER_REGISTRY
from ..transformer_decoder.position_encoding import PositionEmbeddingSine
from ..transformer_decoder.transformer import get_activation

NUM_MASKFORMER_LEVELS = 3
"""The transformer decoder always reads three scales."""

class MSDeformAttnTransformerEncoderLayer(nn.Module):
    """Deformable self-attention + FFN, post-norm."""

    def __init__(self, d_model: int = 256, d_ffn: int = 1024, dropout: float = 0.1, activation: str = "relu",
                 n_levels: int = 4, n_heads: int = 8, n_points: int = 4):
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.activation = get_activation(activation)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src: torch.Tensor, pos: torch.Tensor, reference_points: torch.Tensor,
                spatial_shapes: torch.Tensor, level_start_index: torch.Tensor,
                padding_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """src, pos: [N, S, C]; reference_points: [N, S, L, 2]. Returns [N, S, C]."""
        attended = self.self_attn(src + pos, reference_points, src, spatial_shapes, level_start_index, padding_mask)
        src = self.norm1(src + self.dropout1(attended))
        ffn = self.linear2(self.dropout2(self.activation(self.linear1(src))))
        return self.norm2(src + self.dropout3(ffn))


class MSDeformAttnTransformerEncoder(nn.Module):
    """A stack of identical encoder layers (independent weights)."""

    def __init__(self, encoder_layer: nn.Module, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList([copy.deepcopy(encoder_layer) for _ in range(num_layers)])
        self.num_layers = num_layers

    @staticmethod
    def get_reference_points(spatial_shapes: Sequence[Tuple[int, int]], batch: int,
                             device: torch.device) -> torch.Tensor:
        """Pixel centres of every level, normalised to [0, 1]: [N, S, L, 2] (x, y); no padding."""
        points = []
        for h, w in spatial_shapes:
            ys = (torch.arange(h, dtype=torch.float32, device=device) + 0.5) / h
            xs = (torch.arange(w, dtype=torch.float32, device=device) + 0.5) / w
            ref_y, ref_x = torch.meshgrid(ys, xs, indexing="ij")
            points.append(torch.stack((ref_x.reshape(-1), ref_y.reshape(-1)), -1))
        ref = torch.cat(points, 0)  # [S, 2]
        return ref[None, :, None, :].expand(batch, -1, len(spatial_shapes), -1)

    def forward(self, src: torch.Tensor, spatial_shapes: torch.Tensor, level_start_index: torch.Tensor,
                pos: torch.Tensor, padding_mask: Optional[torch.Tensor] = None,
                shapes: Optional[Sequence[Tuple[int, int]]] = None) -> torch.Tensor:
        """``shapes``: ``spatial_shapes`` as Python ints when the caller has them (no read of a tensor's values,
        which would break a torch.compile graph)."""
        if shapes is None:
            shapes = [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
        reference_points = self.get_reference_points(shapes, src.shape[0], src.device)
        out = src
        for layer in self.layers:
            out = layer(out, pos, reference_points, spatial_shapes, level_start_index, padding_mask)
        return out


class MSDeformAttnTransformerEncoderOnly(nn.Module):
    """Flattens the levels, adds level embeddings to the positional encodings, runs the encoder."""

    def __init__(self, d_model: int = 256, nhead: int = 8, num_encoder_layers: int = 6, dim_feedforward: int = 1024,
                 dropout: float = 0.1, activation: str = "relu", num_feature_levels: int = 4, enc_n_points: int = 4):
        super().__init__()
        self.d_model = d_model
        self.nhead = nhead
        layer = MSDeformAttnTransformerEncoderLayer(d_model, dim_feedforward, dropout, activation, num_feature_levels,
                                                    nhead, enc_n_points)
        self.encoder = MSDeformAttnTransformerEncoder(layer, num_encoder_layers)
        self.level_embed = nn.Parameter(torch.empty(num_feature_levels, d_model))
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m._reset_parameters()
        nn.init.normal_(self.level_embed)

    def forward(self, srcs: List[torch.Tensor], pos_embeds: List[torch.Tensor]
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """srcs, pos_embeds: per level [N, C, H_l, W_l]. Returns memory [N, S, C], shapes [L, 2], starts [L]."""
        flat_src, flat_pos, shapes = [], [], []
        for level, (src, pos) in enumerate(zip(srcs, pos_embeds)):
            shapes.append(src.shape[-2:])
            flat_src.append(src.flatten(2).transpose(1, 2))
            flat_pos.append(pos.flatten(2).transpose(1, 2) + self.level_embed[level].view(1, 1, -1))
        src_flatten = torch.cat(flat_src, 1)
        pos_flatten = torch.cat(flat_pos, 1)
        spatial_shapes = torch.as_tensor(shapes, dtype=torch.long, device=src_flatten.device)
        level_start_index = torch.cat((spatial_shapes.new_zeros((1,)), spatial_shapes.prod(1).cumsum(0)[:-1]))
        memory = self.encoder(src_flatten, spatial_shapes, level_start_index, pos_flatten, shapes=shapes)
        return memory, spatial_shapes, level_start_index


@PIXEL_DECODER_REGISTRY.register()
class MSDeformAttnPixelDecoder(nn.Module):
    """Deformable transformer encoder over ``transformer_in_features`` (e.g. res3..res5), then FPN-style
    lateral (``adapter_k``) and output (``layer_k``) convs down to ``common_stride``.

    Args:
        input_shape: backbone outputs used by the decoder, name -> ShapeSpec.
        transformer_dropout, transformer_nheads, transformer_dim_feedforward, transformer_enc_layers:
            encoder hyper-parameters.
        conv_dim: channels of every decoder level. mask_dim: channels of ``mask_features``.
        norm: norm of the FPN convs ("GN", "BN", "" ...).
        transformer_in_features: levels given to the deformable encoder.
        common_stride: stride of ``mask_features`` (4).
    """

    def __init__(self, input_shape: Dict[str, ShapeSpec], *, transformer_dropout: float, transformer_nheads: int,
                 transformer_dim_feedforward: int, transformer_enc_layers: int, conv_dim: int, mask_dim: int,
                 norm: str = "GN", transformer_in_features: Sequence[str], common_stride: int = 4):
        super().__init__()
        if not transformer_in_features:
            raise ValueError("MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES is empty; give e.g. "
                             "['res3', 'res4', 'res5'].")
        if conv_dim % 32 != 0:
            raise ValueError(f"MODEL.SEM_SEG_HEAD.CONVS_DIM={conv_dim} must be a multiple of 32 (the encoder's "
                             "input projections use GroupNorm(32, CONVS_DIM), as upstream).")
        missing = [f for f in transformer_in_features if f not in input_shape]
        if missing:
            raise ValueError(
                f"DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES {missing} are not among the decoder inputs "
                f"{sorted(input_shape)} (MODEL.SEM_SEG_HEAD.IN_FEATURES)."
            )
        ordered = sorted(input_shape.items(), key=lambda kv: kv[1].stride)
        self.in_features = [k for k, _ in ordered]
        self.feature_strides = [v.stride for _, v in ordered]
        self.feature_channels = [v.channels for _, v in ordered]
        enc = [(k, v) for k, v in ordered if k in transformer_in_features]
        self.transformer_in_features = [k for k, _ in enc]
        self.transformer_feature_strides = [v.stride for _, v in enc]
        self.transformer_num_feature_levels = len(enc)

        # coarsest level first, as the encoder's level order
        self.input_proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(v.channels, conv_dim, kernel_size=1), nn.GroupNorm(32, conv_dim))
            for _, v in reversed(enc)
        )
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.zeros_(proj[0].bias)

        self.transformer = MSDeformAttnTransformerEncoderOnly(
            d_model=conv_dim, dropout=transformer_dropout, nhead=transformer_nheads,
            dim_feedforward=transformer_dim_feedforward, num_encoder_layers=transformer_enc_layers,
            num_feature_levels=self.transformer_num_feature_levels,
        )
        self.pe_layer = PositionEmbeddingSine(conv_dim // 2, normalize=True)
        self.mask_dim = mask_dim
        self.mask_features = Conv2d(conv_dim, mask_dim, kernel_size=1, stride=1, padding=0)
        c2_xavier_fill(self.mask_features)

        self.maskformer_num_feature_levels = NUM_MASKFORMER_LEVELS
        self.common_stride = common_stride
        self.num_fpn_levels = int(math.log2(min(self.transformer_feature_strides)) - math.log2(common_stride))
        use_bias = norm == ""
        lateral_convs, output_convs = [], []
        for idx, in_channels in enumerate(self.feature_channels[: self.num_fpn_levels]):
            lateral = Conv2d(in_channels, conv_dim, kernel_size=1, bias=use_bias, norm=get_norm(norm, conv_dim))
            output = Conv2d(conv_dim, conv_dim, kernel_size=3, stride=1, padding=1, bias=use_bias,
                            norm=get_norm(norm, conv_dim), activation=F.relu)
            c2_xavier_fill(lateral)
            c2_xavier_fill(output)
            self.add_module(f"adapter_{idx + 1}", lateral)
            self.add_module(f"layer_{idx + 1}", output)
            lateral_convs.append(lateral)
            output_convs.append(output)
        # finest level last in the top-down pass; plain lists so the modules keep their upstream names
        self.lateral_convs = lateral_convs[::-1]
        self.output_convs = output_convs[::-1]

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]) -> MSDeformAttnPixelDecoder:
        head = cfg.MODEL.SEM_SEG_HEAD
        return cls(
            {k: v for k, v in input_shape.items() if k in head.IN_FEATURES},
            transformer_dropout=cfg.MODEL.MASK_FORMER.DROPOUT,
            transformer_nheads=cfg.MODEL.MASK_FORMER.NHEADS,
            transformer_dim_feedforward=1024,  # upstream fixes 1024 for the deformable encoder
            transformer_enc_layers=head.TRANSFORMER_ENC_LAYERS,
            conv_dim=head.CONVS_DIM,
            mask_dim=head.MASK_DIM,
            norm=head.NORM,
            transformer_in_features=head.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES,
            common_stride=head.COMMON_STRIDE,
        )

    def forward(self, features: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor, List[torch.Tensor]]:
        """Same as :meth:`forward_features` (what the head calls)."""
        return self.forward_features(features)

    def forward_features(self, features: Dict[str, torch.Tensor]
                         ) -> Tuple[torch.Tensor, torch.Tensor, List[torch.Tensor]]:
        """
        Args:
            features: backbone maps by name, [B, C_k, H/stride_k, W/stride_k], for every name in ``in_features``.
        Returns:
            mask_features: [B, mask_dim, H/common_stride, W/common_stride].
            transformer_encoder_features: the coarsest encoder output, [B, conv_dim, H/32, W/32].
            multi_scale_features: 3 maps [B, conv_dim, h, w], coarsest first.
        """
        missing = [name for name in self.in_features if name not in features]
        if missing:
            raise KeyError(f"MSDeformAttnPixelDecoder: features {missing} missing from the input (got "
                           f"{sorted(features)}); the backbone must return MODEL.SEM_SEG_HEAD.IN_FEATURES.")
        device_type = next(iter(features.values())).device.type
        # Under float16 autocast (SOLVER.AMP) the pixel decoder runs in float32, as upstream's (float16 overflows
        # in the encoder). bfloat16 (MODEL.PRECISION bf16) has float32's range: convolutions and linear layers
        # run in bfloat16 there, while MSDeformAttn keeps its sampling offsets and attention weights in float32.
        in_float32 = torch.is_autocast_enabled(device_type) and torch.get_autocast_dtype(device_type) == torch.float16
        cast = (lambda t: t.float()) if in_float32 else (lambda t: t)
        with torch.autocast(device_type=device_type, enabled=False) if in_float32 else contextlib.nullcontext():
            srcs, pos = [], []
            for idx, name in enumerate(self.transformer_in_features[::-1]):
                x = cast(features[name])
                srcs.append(self.input_proj[idx](x))
                pos.append(self.pe_layer(x))
            memory, _, _ = self.transformer(srcs, pos)
            batch = memory.shape[0]
            shapes = [src.shape[-2:] for src in srcs]  # the levels' sizes, without reading a tensor's values
            out = [
                z.transpose(1, 2).reshape(batch, -1, h, w)
                for z, (h, w) in zip(memory.split([h * w for h, w in shapes], dim=1), shapes)
            ]
            for idx, name in enumerate(self.in_features[: self.num_fpn_levels][::-1]):
                lateral = self.lateral_convs[idx](cast(features[name]))
                top_down = F.interpolate(out[-1], size=lateral.shape[-2:], mode="bilinear", align_corners=False)
                out.append(self.output_convs[idx](lateral + top_down))
            multi_scale_features = out[: self.maskformer_num_feature_levels]
            return self.mask_features(out[-1]), out[0], multi_scale_features

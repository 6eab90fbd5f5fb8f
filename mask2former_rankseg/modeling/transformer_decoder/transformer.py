"""DETR's encoder-decoder transformer, as MaskFormer uses it (``StandardTransformerDecoder``, and the encoder of
``TransformerEncoderPixelDecoder``).

Module names are upstream's (``encoder.layers.{i}``, ``decoder.layers.{i}.{self_attn,multihead_attn,linear1,
linear2,norm1,norm2,norm3}``, ``decoder.norm``) so official MaskFormer checkpoints load by name. Differences from
``torch.nn.Transformer``: positional encodings are added to queries and keys of every attention, the encoder has
no final LayerNorm in post-norm mode, and the decoder reports every layer's output.
"""

from __future__ import annotations

import copy
from typing import List, Optional, Tuple

import torch
from torch import nn
from torch.nn import functional as F

_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "glu": F.glu}


def get_activation(name: str):
    """``"relu"``, ``"gelu"`` or ``"glu"`` -> the function."""
    if name not in _ACTIVATIONS:
        raise ValueError(f"Unknown transformer activation {name!r}; choose one of {sorted(_ACTIVATIONS)}.")
    return _ACTIVATIONS[name]


def _with_pos(x: torch.Tensor, pos: Optional[torch.Tensor]) -> torch.Tensor:
    return x if pos is None else x + pos


class TransformerEncoderLayer(nn.Module):
    """Self-attention + FFN with residuals; LayerNorm after (post-norm) or before (``normalize_before``) each."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str = "relu", normalize_before: bool = False):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.activation = get_activation(activation)
        self.normalize_before = normalize_before

    def forward(self, src: torch.Tensor, src_key_padding_mask: Optional[torch.Tensor] = None,
                pos: Optional[torch.Tensor] = None) -> torch.Tensor:
        """src, pos: [S, B, C]; src_key_padding_mask: [B, S] (True = padding). Returns [S, B, C]."""
        pre = self.normalize_before
        x = self.norm1(src) if pre else src
        q = k = _with_pos(x, pos)
        attended = self.self_attn(q, k, value=x, key_padding_mask=src_key_padding_mask, need_weights=False)[0]
        src = src + self.dropout1(attended)
        if not pre:
            src = self.norm1(src)
        x = self.norm2(src) if pre else src
        src = src + self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))
        return src if pre else self.norm2(src)


class TransformerDecoderLayer(nn.Module):
    """Query self-attention, cross-attention to the memory, FFN; each with residual and LayerNorm."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str = "relu", normalize_before: bool = False):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.activation = get_activation(activation)
        self.normalize_before = normalize_before

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor,
                memory_key_padding_mask: Optional[torch.Tensor] = None, pos: Optional[torch.Tensor] = None,
                query_pos: Optional[torch.Tensor] = None) -> torch.Tensor:
        """tgt, query_pos: [Q, B, C]; memory, pos: [S, B, C]; memory_key_padding_mask: [B, S]. Returns [Q, B, C]."""
        pre = self.normalize_before
        x = self.norm1(tgt) if pre else tgt
        q = k = _with_pos(x, query_pos)
        tgt = tgt + self.dropout1(self.self_attn(q, k, value=x, need_weights=False)[0])
        if not pre:
            tgt = self.norm1(tgt)
        x = self.norm2(tgt) if pre else tgt
        attended = self.multihead_attn(
            query=_with_pos(x, query_pos), key=_with_pos(memory, pos), value=memory,
            key_padding_mask=memory_key_padding_mask, need_weights=False,
        )[0]
        tgt = tgt + self.dropout2(attended)
        if not pre:
            tgt = self.norm2(tgt)
        x = self.norm3(tgt) if pre else tgt
        tgt = tgt + self.dropout3(self.linear2(self.dropout(self.activation(self.linear1(x)))))
        return tgt if pre else self.norm3(tgt)


class TransformerEncoder(nn.Module):
    """``num_layers`` independent copies of ``encoder_layer``, then ``norm`` if given."""

    def __init__(self, encoder_layer: nn.Module, num_layers: int, norm: Optional[nn.Module] = None):
        super().__init__()
        self.layers = _clones(encoder_layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm

    def forward(self, src: torch.Tensor, src_key_padding_mask: Optional[torch.Tensor] = None,
                pos: Optional[torch.Tensor] = None) -> torch.Tensor:
        out = src
        for layer in self.layers:
            out = layer(out, src_key_padding_mask=src_key_padding_mask, pos=pos)
        return out if self.norm is None else self.norm(out)


class TransformerDecoder(nn.Module):
    """``num_layers`` decoder layers sharing the final LayerNorm ``norm``.

    ``forward`` returns ``(hs, raw)``: ``hs`` [L, Q, B, C] is ``norm`` of every layer's output when
    ``return_intermediate`` (deep supervision), else of the last one only (L = 1); ``raw`` is the list of the
    un-normalised outputs of every layer, [Q, B, C] each (what RankSeg's multi-label head reads).
    """

    def __init__(self, decoder_layer: nn.Module, num_layers: int, norm: nn.Module, return_intermediate: bool = False):
        super().__init__()
        self.layers = _clones(decoder_layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm
        self.return_intermediate = return_intermediate

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor,
                memory_key_padding_mask: Optional[torch.Tensor] = None, pos: Optional[torch.Tensor] = None,
                query_pos: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        out = tgt
        raw = []
        for layer in self.layers:
            out = layer(out, memory, memory_key_padding_mask=memory_key_padding_mask, pos=pos, query_pos=query_pos)
            raw.append(out)
        kept = raw if self.return_intermediate else raw[-1:]
        return torch.stack([self.norm(x) for x in kept]), raw


class Transformer(nn.Module):
    """DETR's transformer: an encoder over the flattened feature map and a decoder of learned queries.

    Args:
        d_model, nhead, dim_feedforward, dropout, activation: layer sizes and options.
        num_encoder_layers: encoder depth (MaskFormer's ``ENC_LAYERS``, 0 in its configs).
        num_decoder_layers: decoder depth (``DEC_LAYERS``).
        normalize_before: pre-norm layers (then the encoder ends with a LayerNorm).
        return_intermediate_dec: report every decoder layer (deep supervision).
    """

    def __init__(self, d_model: int = 512, nhead: int = 8, num_encoder_layers: int = 6, num_decoder_layers: int = 6,
                 dim_feedforward: int = 2048, dropout: float = 0.1, activation: str = "relu",
                 normalize_before: bool = False, return_intermediate_dec: bool = False):
        super().__init__()
        encoder_layer = TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, activation, normalize_before)
        self.encoder = TransformerEncoder(encoder_layer, num_encoder_layers,
                                          nn.LayerNorm(d_model) if normalize_before else None)
        decoder_layer = TransformerDecoderLayer(d_model, nhead, dim_feedforward, dropout, activation, normalize_before)
        self.decoder = TransformerDecoder(decoder_layer, num_decoder_layers, nn.LayerNorm(d_model),
                                          return_intermediate=return_intermediate_dec)
        xavier_init_matrices(self)
        self.d_model = d_model
        self.nhead = nhead

    def forward(self, src: torch.Tensor, mask: Optional[torch.Tensor], query_embed: torch.Tensor,
                pos_embed: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, List[torch.Tensor]]:
        """
        Args:
            src: [B, C, H, W] projected features; mask: [B, H, W] True on padding, or None.
            query_embed: [Q, C] learned query positions; pos_embed: [B, C, H, W].
        Returns:
            hs [L, B, Q, C] (normalised decoder outputs, see :class:`TransformerDecoder`), memory [B, C, H, W],
            raw decoder outputs (list of [Q, B, C], one per layer).
        """
        b, c, h, w = src.shape
        src = src.flatten(2).permute(2, 0, 1)
        pos_embed = pos_embed.flatten(2).permute(2, 0, 1)
        query_embed = query_embed.unsqueeze(1).repeat(1, b, 1)
        if mask is not None:
            mask = mask.flatten(1)
        memory = self.encoder(src, src_key_padding_mask=mask, pos=pos_embed)
        hs, raw = self.decoder(torch.zeros_like(query_embed), memory, memory_key_padding_mask=mask, pos=pos_embed,
                               query_pos=query_embed)
        return hs.transpose(1, 2), memory.permute(1, 2, 0).reshape(b, c, h, w), raw


def xavier_init_matrices(module: nn.Module) -> None:
    """Xavier-uniform initialisation of every parameter with 2+ dimensions (DETR's ``_reset_parameters``)."""
    for p in module.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)


def _clones(module: nn.Module, n: int) -> nn.ModuleList:
    return nn.ModuleList(copy.deepcopy(module) for _ in range(n))

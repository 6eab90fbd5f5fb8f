"""RankSeg's multi-label head: scores every category for the whole image (``ml_head``)."""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

from ...layers import drop_path


class GroupWiseLinear(nn.Module):
    """One weight vector and bias per category: ``logit_k = <W_k, x_k> + b_k``.

    Parameters ``W`` [1, K, D] and ``b`` [1, K] (upstream's names).
    """

    def __init__(self, num_class: int, hidden_dim: int, bias: bool = True):
        super().__init__()
        self.num_class = num_class
        self.hidden_dim = hidden_dim
        self.W = nn.Parameter(torch.empty(1, num_class, hidden_dim))
        self.b = nn.Parameter(torch.empty(1, num_class)) if bias else None
        bound = 1.0 / math.sqrt(hidden_dim)
        nn.init.uniform_(self.W, -bound, bound)
        if self.b is not None:
            nn.init.uniform_(self.b, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, K, D] -> [B, K]."""
        out = (self.W * x).sum(-1)
        return out + self.b if self.b is not None else out


class Attention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` projection: softmax(q k^T * head_dim**-0.5) v, with
    dropout on the attention weights and after ``proj`` (computed by ``F.scaled_dot_product_attention``).
    """

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        if dim % heads != 0:
            raise ValueError(f"Multi-label head: HIDDEN_DIM={dim} must be divisible by its {heads} heads.")
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.attn_drop = nn.Dropout(dropout)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop.p if self.training else 0.0,
                                             scale=(c // self.heads) ** -0.5)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, c)))


class FeedForward(nn.Module):
    """Linear -> GELU -> dropout -> Linear -> dropout."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(F.gelu(self.fc1(x)))))


class Block(nn.Module):
    """Pre-norm transformer block (``norm1``, ``attn``, ``norm2``, ``mlp``)."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.mlp = FeedForward(dim, mlp_dim, dropout)
        self.drop_path = drop_path

    def _drop_path(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.drop_path, self.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self._drop_path(self.attn(self.norm1(x)))
        return x + self._drop_path(self.mlp(self.norm2(x)))


class _ConvReLU(nn.Module):
    """A 1x1 convolution (with bias) and ReLU, named ``conv`` as mmcv's ConvModule."""

    def __init__(self, in_channels: int, out_channels: int, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, groups=groups)
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x))


class SeparableProjection(nn.Module):
    """Depthwise 1x1 convolution + ReLU, then pointwise 1x1 convolution + ReLU: [B, C_in, H, W] -> [B, C_out, H, W]
    (mmcv's ``DepthwiseSeparableConvModule`` with its defaults, as upstream's per-pixel multi-label head uses it;
    names ``depthwise_conv.conv``, ``pointwise_conv.conv``)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.depthwise_conv = _ConvReLU(in_channels, in_channels, groups=in_channels)
        self.pointwise_conv = _ConvReLU(in_channels, out_channels)

    @property
    def in_features(self) -> int:
        return self.depthwise_conv.conv.in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise_conv(self.depthwise_conv(x))


PROJECTIONS = ("linear", "separable_conv")
"""How :class:`MultiLabelHead` projects its input to ``hidden_dim``: a linear layer on tokens (the mask-classification
models' head, on decoder queries) or :class:`SeparableProjection` on a pooled feature map (the per-pixel models')."""


class MultiLabelHead(nn.Module):
    """Image-level category scores from a set of feature tokens.

    Tokens are projected to ``hidden_dim`` (``proj_dec``), one embedding per category (``cls_emb``, or the
    classifier's own embeddings with ``share_embedding``) is appended, one transformer ``block`` and a
    LayerNorm (``norm``) follow, and a per-category linear read-out (``fc``) gives one logit per category.

    Args:
        num_classes: K.
        d_encoder: channels of the input tokens.
        hidden_dim: width of the head; n_heads: attention heads; d_ff: MLP width; dropout: in the block.
        share_embedding: category embeddings are passed in by the caller.
        downsample: if set, input maps [B, C, H, W] are average-pooled to this size first.
        droppath: stochastic depth of the block.
        projection: one of :data:`PROJECTIONS`; ``"separable_conv"`` needs map inputs [B, C, H, W].
    """

    def __init__(self, num_classes: int, d_encoder: int, hidden_dim: int, n_heads: int, d_ff: int,
                 dropout: float, share_embedding: bool, downsample: Optional[int] = None, droppath: float = 0.0,
                 projection: str = "linear"):
        super().__init__()
        if projection not in PROJECTIONS:
            raise ValueError(f"MultiLabelHead projection={projection!r}; choose one of {PROJECTIONS}.")
        self.num_classes = num_classes
        self.hidden_dim = hidden_dim
        self.share_embedding = share_embedding
        self.proj_dec = (nn.Linear(d_encoder, hidden_dim) if projection == "linear"
                         else SeparableProjection(d_encoder, hidden_dim))
        if not share_embedding:
            self.cls_emb = nn.Parameter(torch.empty(1, num_classes, hidden_dim))
            nn.init.trunc_normal_(self.cls_emb, std=0.02)
        self.block = Block(hidden_dim, n_heads, d_ff, dropout, droppath)
        self.norm = nn.LayerNorm(hidden_dim)
        self.fc = GroupWiseLinear(num_classes, hidden_dim)
        self.pooling = nn.AdaptiveAvgPool2d(downsample) if downsample else None

    @classmethod
    def from_config(cls, cfg, num_classes: int, d_encoder: int, *, downsample: Optional[int] = None,
                    projection: str = "linear") -> MultiLabelHead:
        """MODEL.RANKSEG.HIDDEN_DIM -> width, HIDDEN_DIM // 64 heads, 4x MLP, dropout 0.1; SHARE_EMBEDDING."""
        rs = cfg.MODEL.RANKSEG
        return cls(num_classes, d_encoder, rs.HIDDEN_DIM, n_heads=max(1, rs.HIDDEN_DIM // 64),
                   d_ff=4 * rs.HIDDEN_DIM, dropout=0.1, share_embedding=rs.SHARE_EMBEDDING, downsample=downsample,
                   projection=projection)

    def forward(self, tokens: torch.Tensor, class_embedding: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        Args:
            tokens: [B, C, N] (e.g. decoder queries as [B, C, Q]) or [B, C, H, W] (pixel features).
            class_embedding: [K, hidden_dim] category embeddings; required with ``share_embedding``.
        Returns:
            image logits [B, K].
        """
        if tokens.dim() not in (3, 4) or tokens.shape[1] != self.proj_dec.in_features:
            raise ValueError(
                f"MultiLabelHead expects tokens [B, {self.proj_dec.in_features}, N] or "
                f"[B, {self.proj_dec.in_features}, H, W] (d_encoder={self.proj_dec.in_features}), got "
                f"{tuple(tokens.shape)}; decoder query features [Q, B, C] must be permuted to [B, C, Q]."
            )
        if self.pooling is not None and tokens.dim() == 4:
            tokens = self.pooling(tokens)
        b, c = tokens.shape[:2]
        if isinstance(self.proj_dec, SeparableProjection):
            if tokens.dim() != 4:
                raise ValueError(f"MultiLabelHead with a separable_conv projection reads feature maps [B, C, H, W], "
                                 f"got {tuple(tokens.shape)}.")
            x = self.proj_dec(tokens).flatten(2).transpose(1, 2)  # [B, N, hidden]
        else:
            x = self.proj_dec(tokens.reshape(b, c, -1).transpose(1, 2))  # [B, N, hidden]
        if self.share_embedding:
            if class_embedding is None or class_embedding.shape != (self.num_classes, self.hidden_dim):
                got = None if class_embedding is None else tuple(class_embedding.shape)
                raise ValueError(
                    f"MultiLabelHead with MODEL.RANKSEG.SHARE_EMBEDDING=True needs class_embedding of shape "
                    f"{(self.num_classes, self.hidden_dim)} (the query classifier's weight without its "
                    f"'no object' row, e.g. predictor.class_embed.weight[:-1]), got {got}. Its width must equal "
                    f"MODEL.RANKSEG.HIDDEN_DIM={self.hidden_dim}, i.e. HIDDEN_DIM must equal MODEL.MASK_FORMER."
                    "HIDDEN_DIM, or set SHARE_EMBEDDING=False."
                )
            emb = class_embedding.unsqueeze(0)
        else:
            emb = self.cls_emb
        x = torch.cat((x, emb.expand(b, -1, -1)), 1)
        x = self.norm(self.block(x))
        return self.fc(x[:, -self.num_classes:])

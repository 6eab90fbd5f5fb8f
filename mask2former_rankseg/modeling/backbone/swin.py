"""Swin Transformer backbone (Liu et al., 2021) as Mask2Former's ``D2SwinTransformer``.

Parameter and buffer names equal upstream's, so the ``backbone.*`` part of an official Mask2Former / RankSeg
Swin checkpoint (and ImageNet Swin weights converted by ``tools/convert-*swin*-to-d2.py``) loads as is:
``patch_embed.proj``, ``patch_embed.norm`` (PATCH_NORM), ``absolute_pos_embed`` (APE),
``layers.{i}.blocks.{j}.{norm1, attn.relative_position_bias_table, attn.relative_position_index, attn.qkv,
attn.proj, norm2, mlp.fc1, mlp.fc2}``, ``layers.{i}.downsample.{norm, reduction}`` (all stages but the last)
and one ``norm{i}`` per stage.

Behaviour follows upstream's (mmseg-derived) implementation, which differs from the classification code:
inputs of any size are padded (to the patch size, to the window size in every block, to even sizes before
patch merging); the shifted-window mask is built for the padded size; padded tokens are *not* masked out in
attention; and the window is never shrunk to the feature size (small maps are padded to one full window,
and shifting still applies).
"""

from __future__ import annotations

import logging
import math
import re
from typing import Dict, Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from ...layers import DropPath, ShapeSpec
from ..registry import BACKBONE_REGISTRY
from .backbone import Backbone

__all__ = [
    "OFFICIAL_SWIN_KEY",
    "D2SwinTransformer",
    "PatchEmbed",
    "PatchMerging",
    "SwinBlock",
    "SwinStage",
    "WindowAttention",
    "build_swin_backbone",
    "relative_position_index",
    "shifted_window_mask",
    "window_partition",
    "window_reverse",
]

logger = logging.getLogger(__name__)

OFFICIAL_SWIN_KEY = re.compile(
    r"(patch_embed\.(proj|norm)\.(weight|bias)|absolute_pos_embed"
    r"|layers\.\d+\.blocks\.\d+\.((norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.(weight|bias)"
    r"|attn\.relative_position_bias_table|attn\.relative_position_index|attn_mask)"
    r"|layers\.\d+\.downsample\.(reduction\.weight|norm\.(weight|bias))"
    r"|norm\d*\.(weight|bias)|head\.(weight|bias))"
)
"""Names in official Swin (V1) checkpoints: this backbone's (``norm{i}``) plus the classifier's extras (the
final ``norm``, ``head``, and the ``attn_mask`` buffers of shifted blocks). Use with ``fullmatch``."""


# --------------------------------------------------------------------------------------------------
# window helpers
# --------------------------------------------------------------------------------------------------
def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """[B, H, W, C] (H, W multiples of ``window_size``) -> [B * nW, window_size**2, C], windows row-major."""
    B, H, W, C = x.shape
    x = x.view(B, H // window_size, window_size, W // window_size, window_size, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size * window_size, C)


def window_reverse(windows: torch.Tensor, window_size: int, H: int, W: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: [B * nW, window_size**2, C] -> [B, H, W, C]."""
    C = windows.shape[-1]
    x = windows.view(-1, H // window_size, W // window_size, window_size, window_size, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, H, W, C)


def relative_position_index(window_size: int) -> torch.Tensor:
    """[N, N] (N = window_size**2) index into the [(2w-1)**2, heads] bias table for each token pair (i, j):
    ``(dy + w - 1) * (2w - 1) + (dx + w - 1)`` with ``(dy, dx)`` = position of i minus position of j."""
    ys, xs = torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    dy = ys[:, None] - ys[None, :] + window_size - 1
    dx = xs[:, None] - xs[None, :] + window_size - 1
    return dy * (2 * window_size - 1) + dx


def shifted_window_mask(Hp: int, Wp: int, window_size: int, shift_size: int, device=None,
                        dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[nW, N, N] additive mask (0 or -100) for attention in cyclically shifted windows of a padded
    [Hp, Wp] map: tokens that were not neighbours before the shift (they come from different regions
    ``[0, L-w)``, ``[L-w, L-s)``, ``[L-s, L)`` along either axis) do not attend to each other."""

    def regions(length: int) -> torch.Tensor:
        idx = torch.arange(length, device=device)
        return (idx >= length - window_size).long() + (idx >= length - shift_size).long()

    region = regions(Hp)[:, None] * 3 + regions(Wp)[None, :]  # [Hp, Wp], 9 regions
    region = window_partition(region[None, :, :, None], window_size).squeeze(-1)  # [nW, N]
    different = region[:, None, :] != region[:, :, None]
    return torch.zeros(different.shape, device=device, dtype=dtype).masked_fill_(different, -100.0)


# --------------------------------------------------------------------------------------------------
# modules
# --------------------------------------------------------------------------------------------------
class Mlp(nn.Module):
    """Linear -> GELU -> dropout -> Linear -> dropout on [..., C]."""

    def __init__(self, dim: int, hidden_dim: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside square windows, with a learned relative position bias.

    Args:
        dim: channels C.
        window_size: window side w (N = w * w tokens per window).
        num_heads: heads (C must be divisible by it).
        qkv_bias: bias in the qkv projection.
        qk_scale: logit scale (default head_dim ** -0.5).
        attn_drop: dropout on the attention weights.
        proj_drop: dropout after the output projection.
    """

    def __init__(self, dim: int, window_size: int, num_heads: int, *, qkv_bias: bool = True,
                 qk_scale: Optional[float] = None, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"Swin: {dim} channels cannot be split into {num_heads} heads (MODEL.SWIN.NUM_HEADS).")
        self.dim = dim
        self.window_size = window_size
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        # persistent, as upstream: it is part of official and Mask2Former state dicts
        self.register_buffer("relative_position_index", relative_position_index(window_size))
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def relative_position_bias(self) -> torch.Tensor:
        """[heads, N, N]."""
        n = self.window_size * self.window_size
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(n, n, self.num_heads).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x: [B * nW, N, C] windows (batch-major); mask: [nW, N, N] additive or None. Returns [B * nW, N, C]."""
        Bw, N, C = x.shape
        q, k, v = self.qkv(x).view(Bw, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        bias = self.relative_position_bias().to(q.dtype).unsqueeze(0)  # [1, heads, N, N]
        if mask is not None:
            nW = mask.shape[0]
            bias = bias + mask.to(q.dtype).unsqueeze(1)  # [nW, heads, N, N]
            bias = bias.unsqueeze(0).expand(Bw // nW, -1, -1, -1, -1).reshape(Bw, self.num_heads, N, N)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale,
                                             dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(Bw, N, C)))


class SwinBlock(nn.Module):
    """Pre-norm block: (shifted) window attention and an MLP, each with a residual and drop path.

    Args:
        dim: channels C.
        num_heads: attention heads.
        window_size: window side.
        shift_size: cyclic shift (0: regular windows, usually window_size // 2 on odd blocks).
        mlp_ratio: MLP hidden width / C.
        qkv_bias, qk_scale, attn_drop: see :class:`WindowAttention`.
        drop: dropout after the attention projection and in the MLP.
        drop_path: stochastic depth probability of both residual branches.
    """

    def __init__(self, dim: int, num_heads: int, *, window_size: int = 7, shift_size: int = 0,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, qk_scale: Optional[float] = None, drop: float = 0.0,
                 attn_drop: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        if not 0 <= shift_size < window_size:
            raise ValueError(f"Swin: shift size {shift_size} must be in [0, window size {window_size}).")
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale,
                                    attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x: [B, H, W, C]; attn_mask: [nW, N, N] for the padded size (used only when shifted). -> [B, H, W, C]."""
        B, H, W, C = x.shape
        w, s = self.window_size, self.shift_size
        y = F.pad(self.norm1(x), (0, 0, 0, (-W) % w, 0, (-H) % w))  # pad right/bottom after the norm
        Hp, Wp = y.shape[1:3]
        if s > 0:
            y = torch.roll(y, shifts=(-s, -s), dims=(1, 2))
        y = self.attn(window_partition(y, w), mask=attn_mask if s > 0 else None)
        y = window_reverse(y, w, Hp, Wp)
        if s > 0:
            y = torch.roll(y, shifts=(s, s), dims=(1, 2))
        x = x + self.drop_path(y[:, :H, :W, :])
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """2x2 neighbours concatenated (pad odd sizes), LayerNorm(4C), Linear(4C -> 2C, no bias):
    [B, H, W, C] -> [B, ceil(H/2), ceil(W/2), 2C]."""

    def __init__(self, dim: int):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[1:3]
        x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
        # channel order (row offset, column offset): (0, 0), (1, 0), (0, 1), (1, 1), as upstream
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    """``depth`` blocks alternating regular and shifted windows, then (optionally) patch merging.

    Args:
        dim: channels of the stage.
        depth: number of blocks.
        num_heads: attention heads.
        window_size: window side (the shift is window_size // 2).
        drop_path: one stochastic depth probability per block.
        downsample: append :class:`PatchMerging` (as ``downsample``) for the next stage.
        use_checkpoint: recompute each block in the backward pass to save memory.
        **block_kwargs: ``mlp_ratio``, ``qkv_bias``, ``qk_scale``, ``drop``, ``attn_drop`` of :class:`SwinBlock`.
    """

    def __init__(self, dim: int, depth: int, num_heads: int, *, window_size: int = 7,
                 drop_path: Sequence[float] = (), downsample: bool = False, use_checkpoint: bool = False,
                 **block_kwargs):
        super().__init__()
        drop_path = list(drop_path) or [0.0] * depth
        self.window_size = window_size
        self.shift_size = window_size // 2
        self.use_checkpoint = use_checkpoint
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, window_size=window_size, shift_size=0 if i % 2 == 0 else self.shift_size,
                      drop_path=drop_path[i], **block_kwargs)
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, H, W, C] -> [B, H, W, C] (before the patch merging, which the caller applies)."""
        w = self.window_size
        Hp, Wp = math.ceil(x.shape[1] / w) * w, math.ceil(x.shape[2] / w) * w
        mask = shifted_window_mask(Hp, Wp, w, self.shift_size, device=x.device, dtype=x.dtype)
        for block in self.blocks:
            if self.use_checkpoint and torch.is_grad_enabled():
                x = checkpoint(block, x, mask, use_reentrant=False)
            else:
                x = block(x, mask)
        return x


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch_size`` patches (input padded right/bottom) -> Conv -> optional LayerNorm:
    [B, C_in, H, W] -> [B, ceil(H/p), ceil(W/p), C]."""

    def __init__(self, patch_size: int = 4, in_chans: int = 3, embed_dim: int = 96, patch_norm: bool = True):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim) if patch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        x = F.pad(x, (0, (-x.shape[3]) % p, 0, (-x.shape[2]) % p))
        x = self.proj(x).permute(0, 2, 3, 1)
        return self.norm(x) if self.norm is not None else x


class D2SwinTransformer(Backbone):
    """Swin Transformer returning ``{"res{i+2}": [B, embed_dim * 2**i, H / (patch * 2**i), W / (patch * 2**i)]}``
    (sizes rounded up) for the requested ``out_features``, each after its own LayerNorm ``norm{i}``.

    Args:
        pretrain_img_size: image size of pre-training (sizes the absolute position embedding).
        patch_size: patch side (stride of res2).
        in_chans: input channels.
        embed_dim: channels of the first stage (doubled at every stage).
        depths: blocks per stage.
        num_heads: attention heads per stage.
        window_size: window side (all stages).
        mlp_ratio: MLP hidden width / channels.
        qkv_bias: bias in the qkv projections.
        qk_scale: attention logit scale (default head_dim ** -0.5).
        drop_rate: dropout after the patch embedding, attention projections and MLPs.
        attn_drop_rate: dropout on attention weights.
        drop_path_rate: stochastic depth, rising linearly from 0 (first block) to this (last block).
        ape: learn an absolute position embedding ``absolute_pos_embed`` [1, C, Hpre, Wpre], resized bicubically.
        patch_norm: LayerNorm after the patch embedding.
        out_features: names to return among ``res2``, ``res3``, ...
        use_checkpoint: gradient checkpointing of every block (less memory, slower backward).
    """

    def __init__(self, *, pretrain_img_size: int = 224, patch_size: int = 4, in_chans: int = 3, embed_dim: int = 96,
                 depths: Sequence[int] = (2, 2, 6, 2), num_heads: Sequence[int] = (3, 6, 12, 24),
                 window_size: int = 7, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 qk_scale: Optional[float] = None, drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.2, ape: bool = False, patch_norm: bool = True,
                 out_features: Sequence[str] = ("res2", "res3", "res4", "res5"), use_checkpoint: bool = False):
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError(f"MODEL.SWIN.DEPTHS {list(depths)} and NUM_HEADS {list(num_heads)} differ in length.")
        num_stages = len(depths)
        self.num_features = [int(embed_dim * 2**i) for i in range(num_stages)]
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim, patch_norm)
        self.ape = ape
        if ape:
            grid = pretrain_img_size // patch_size
            self.absolute_pos_embed = nn.Parameter(torch.zeros(1, embed_dim, grid, grid))
            nn.init.trunc_normal_(self.absolute_pos_embed, std=0.02)
        self.pos_drop = nn.Dropout(drop_rate)

        dpr = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()  # as upstream (float32 steps)
        self.layers = nn.ModuleList()
        for i, (depth, heads) in enumerate(zip(depths, num_heads)):
            start = sum(depths[:i])
            self.layers.append(SwinStage(
                self.num_features[i], depth, heads, window_size=window_size, drop_path=dpr[start:start + depth],
                downsample=i < num_stages - 1, use_checkpoint=use_checkpoint, mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias, qk_scale=qk_scale, drop=drop_rate, attn_drop=attn_drop_rate,
            ))
        # upstream builds one norm per stage whatever OUT_FEATURES says (its out_indices are always all stages)
        for i, channels in enumerate(self.num_features):
            self.add_module(f"norm{i}", nn.LayerNorm(channels))

        names = [f"res{i + 2}" for i in range(num_stages)]
        self._out_feature_strides = {n: patch_size * 2**i for i, n in enumerate(names)}
        self._out_feature_channels = dict(zip(names, self.num_features))
        unknown = [f for f in out_features if f not in self._out_feature_channels]
        if unknown or not out_features:
            raise ValueError(f"MODEL.SWIN.OUT_FEATURES {list(out_features)}: choose among {names}.")
        self._out_features = list(out_features)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    @property
    def size_divisibility(self) -> int:
        return 32

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """x: [B, C_in, H, W] (any H, W). Returns the ``out_features`` maps, NCHW."""
        if x.dim() != 4:
            raise ValueError(f"D2SwinTransformer takes [B, C, H, W] inputs, got shape {tuple(x.shape)}.")
        x = self.patch_embed(x)  # [B, H, W, C]
        if self.ape:
            pos = F.interpolate(self.absolute_pos_embed, size=x.shape[1:3], mode="bicubic")
            x = x + pos.permute(0, 2, 3, 1)
        x = self.pos_drop(x)
        last = max(int(name[3:]) - 2 for name in self._out_features)
        outputs = {}
        for i, stage in enumerate(self.layers[: last + 1]):
            x = stage(x)
            name = f"res{i + 2}"
            if name in self._out_features:
                outputs[name] = getattr(self, f"norm{i}")(x).permute(0, 3, 1, 2).contiguous()
            if stage.downsample is not None and i < last:
                x = stage.downsample(x)
        return outputs

    @classmethod
    def from_config(cls, cfg, input_shape: Optional[ShapeSpec] = None) -> D2SwinTransformer:
        """Arguments from ``cfg.MODEL.SWIN``; input channels from ``input_shape`` (default 3)."""
        s = cfg.MODEL.SWIN
        in_chans = input_shape.channels if input_shape is not None and input_shape.channels else 3
        return cls(
            pretrain_img_size=s.PRETRAIN_IMG_SIZE, patch_size=s.PATCH_SIZE, in_chans=in_chans,
            embed_dim=s.EMBED_DIM, depths=list(s.DEPTHS), num_heads=list(s.NUM_HEADS), window_size=s.WINDOW_SIZE,
            mlp_ratio=s.MLP_RATIO, qkv_bias=s.QKV_BIAS, qk_scale=s.QK_SCALE, drop_rate=s.DROP_RATE,
            attn_drop_rate=s.ATTN_DROP_RATE, drop_path_rate=s.DROP_PATH_RATE, ape=s.APE, patch_norm=s.PATCH_NORM,
            out_features=list(s.OUT_FEATURES), use_checkpoint=s.USE_CHECKPOINT,
        )


@BACKBONE_REGISTRY.register(name="D2SwinTransformer")
def build_swin_backbone(cfg, input_shape: ShapeSpec) -> D2SwinTransformer:
    """``MODEL.BACKBONE.NAME: "D2SwinTransformer"``: a Swin Transformer from ``cfg.MODEL.SWIN``."""
    model = D2SwinTransformer.from_config(cfg, input_shape)
    logger.debug("Built Swin with %d parameters.", sum(p.numel() for p in model.parameters()))
    return model

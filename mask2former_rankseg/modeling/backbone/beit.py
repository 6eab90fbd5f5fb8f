"""BEiT (Bao et al., 2022) as RankSeg's UPerNet-BEiT uses it (mmseg's ``BEiT`` backbone of the BEiT repository),
built from timm's BEiT blocks and named as timm's / the official ``Beit``.

Parameters: ``patch_embed.proj``, ``cls_token``, ``blocks.{i}.{norm1, attn.qkv (no bias), attn.q_bias,
attn.v_bias, attn.relative_position_bias_table, attn.proj, norm2, mlp.fc1, mlp.fc2, gamma_1, gamma_2}`` (a
relative position bias and layer scale per block; no absolute position embedding, no final norm) and the
pyramid ``fpn1.{0, 1, 3}`` (ConvTranspose, BN, ConvTranspose), ``fpn2.0`` (ConvTranspose). Official BEiT files
(``beit_large_patch16_224_pt22k_ft22k.pth``) and timm's ``beit_large_patch16_224.in22k_ft_in22k`` load by name
through ``MODEL.WEIGHTS``; :meth:`BEiT.adapt_state_dict` does what the BEiT helper of mmseg does on load: a shared
``rel_pos_bias`` table is copied into every block, tables of another window are interpolated to this one
(:func:`resize_relative_position_table`), and ``relative_position_index`` buffers are dropped (they are computed).
"""

from __future__ import annotations

import logging
import math
from functools import partial
from typing import Dict, Mapping, Optional, Sequence

import numpy as np
import torch
from scipy.interpolate import RectBivariateSpline
from torch import nn
from torch.utils.checkpoint import checkpoint

from ...layers import ShapeSpec, get_norm
from ..registry import BACKBONE_REGISTRY
from .backbone import Backbone
from .timm_import import import_timm
from .vit import resolve_out_indices, vit_layer_id

__all__ = ["BEiT", "build_beit_backbone", "geometric_offsets", "resize_relative_position_table"]

logger = logging.getLogger(__name__)

_TABLE = "attn.relative_position_bias_table"
_SHARED_TABLE = "rel_pos_bias.relative_position_bias_table"
_EXTRA_ENTRIES = 3  # the table's last rows: class token to patch, patch to class token, class token to itself


def geometric_offsets(src_size: int, dst_size: int) -> np.ndarray:
    """BEiT's sample positions for a [src_size] axis of relative offsets stretched over [dst_size]: 0 and
    +-(1, 1 + q, 1 + q + q^2, ...), q found by bisection in [1.01, 1.5] so that the largest reaches about
    dst_size // 2 (fine steps at small offsets, coarse at large ones). Returns src_size sorted positions."""
    half = src_size // 2

    def reach(q: float) -> float:  # 1 + q + ... + q^(half - 1)
        return (1.0 - q**half) / (1.0 - q)

    left, right = 1.01, 1.5
    while right - left > 1e-6:
        q = (left + right) / 2.0
        if reach(q) > dst_size // 2:
            right = q
        else:
            left = q
    distances, current = [], 1.0
    for i in range(half):
        distances.append(current)
        current += q ** (i + 1)
    return np.array([-d for d in reversed(distances)] + [0.0] + distances)


def resize_relative_position_table(table: torch.Tensor, dst_size: int) -> torch.Tensor:
    """BEiT's interpolation of a relative position bias table [S*S + 3, heads] (S = 2w - 1 offsets per axis for a
    w x w window; the 3 extra rows kept) to [D*D + 3, heads] (D = dst_size): per head, a bicubic interpolating
    spline through the table at :func:`geometric_offsets` is read at the integer offsets -(D // 2) .. D // 2.
    (mmseg's helper calls ``scipy.interpolate.interp2d(offsets, offsets, values, kind="cubic")``, removed in SciPy
    1.14; SciPy's transition guide gives ``RectBivariateSpline`` on the same grid as its identical replacement,
    with the axes swapped, which on this square grid of equal offsets is the call below.)"""
    src_size = math.isqrt(table.shape[0] - _EXTRA_ENTRIES)
    grid, extra = table[:-_EXTRA_ENTRIES], table[-_EXTRA_ENTRIES:]
    offsets = geometric_offsets(src_size, dst_size)
    targets = np.arange(-(dst_size // 2), dst_size // 2 + 0.1, 1.0)
    heads = []
    for h in range(table.shape[1]):
        values = grid[:, h].reshape(src_size, src_size).float().cpu().numpy()
        spline = RectBivariateSpline(offsets, offsets, values, kx=3, ky=3, s=0)
        heads.append(torch.from_numpy(spline(targets, targets)).reshape(-1))
    resized = torch.stack(heads, dim=1).to(dtype=table.dtype, device=table.device)
    return torch.cat([resized, extra], dim=0)


class BEiT(Backbone):
    """BEiT returning the four-scale pyramid UPerNet reads: with ``out_indices`` (a, b, c, d) (block indices),
    ``res2`` = fpn1(block a) [B, C, H/4, W/4] (ConvTranspose x2, BN, GELU, ConvTranspose x2), ``res3`` =
    fpn2(block b) [B, C, H/8, W/8] (ConvTranspose x2), ``res4`` = block c [B, C, H/16, W/16], ``res5`` =
    fpn4(block d) [B, C, H/32, W/32] (2x2 max pooling); blocks after d are not run.

    Inputs must be ``img_size`` x ``img_size``: the relative position bias is learned for that patch grid (as
    upstream; use sliding-window inference with ``img_size`` crops).

    Args:
        img_size: input side (the attention window is img_size / patch_size patches square).
        patch_size: patch side (16: the pyramid's scales are for 16).
        in_chans: input channels.
        embed_dim: channels C of every block and output.
        depth: number of blocks.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width / C.
        qkv_bias: learned q and v biases (``q_bias``, ``v_bias``; k has none).
        drop_rate: dropout after the patch embedding, the attention projection and the MLP.
        attn_drop_rate: dropout on the attention weights.
        drop_path_rate: stochastic depth, rising linearly from 0 (first block) to this (last block).
        layer_scale_init: initial value of the layer scales ``gamma_1``, ``gamma_2`` (0: no layer scale).
        out_indices: the four block indices (0-based, increasing; -1 = last) feeding res2..res5.
        fpn_norm: normalisation in ``fpn1`` ("SyncBN" as upstream, "BN", ...; "" for none).
        use_checkpoint: recompute each block in the backward pass to save memory.
    """

    def __init__(self, *, img_size: int = 640, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 1024,
                 depth: int = 24, num_heads: int = 16, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop_rate: float = 0.0, attn_drop_rate: float = 0.0, drop_path_rate: float = 0.2,
                 layer_scale_init: float = 1e-6, out_indices: Sequence[int] = (7, 11, 15, 23),
                 fpn_norm: str = "SyncBN", use_checkpoint: bool = False):
        super().__init__()
        timm = import_timm("The BEiT backbone")
        if patch_size != 16:
            raise ValueError(f"MODEL.BEIT.PATCH_SIZE={patch_size}: the feature pyramid (strides 4, 8, 16, 32) is "
                             "built for patch size 16.")
        if img_size % patch_size != 0:
            raise ValueError(f"MODEL.BEIT.IMG_SIZE={img_size} is not a multiple of MODEL.BEIT.PATCH_SIZE={patch_size}.")
        if embed_dim % num_heads != 0:
            raise ValueError(f"MODEL.BEIT.EMBED_DIM={embed_dim} cannot be split into MODEL.BEIT.NUM_HEADS="
                             f"{num_heads} heads.")
        if len(out_indices) != 4:
            raise ValueError(f"MODEL.BEIT.OUT_INDICES={list(out_indices)}: give four block indices, one per scale "
                             "of the pyramid (res2..res5).")
        self.out_indices = resolve_out_indices(out_indices, depth, "MODEL.BEIT.OUT_INDICES")
        self.img_size = img_size
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.num_layers = depth
        self.grid = img_size // patch_size
        self.use_checkpoint = use_checkpoint

        self.patch_embed = timm.layers.PatchEmbed(img_size=img_size, patch_size=patch_size, in_chans=in_chans,
                                                  embed_dim=embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)
        dpr = torch.linspace(0, drop_path_rate, depth, device="cpu").tolist()  # as upstream (float32 steps)
        self.blocks = nn.ModuleList(
            timm.models.beit.Block(
                embed_dim, num_heads, qkv_bias=qkv_bias, mlp_ratio=mlp_ratio, proj_drop=drop_rate,
                attn_drop=attn_drop_rate, drop_path=dpr[i], init_values=layer_scale_init or None,
                norm_layer=partial(nn.LayerNorm, eps=1e-6), window_size=(self.grid, self.grid),
            )
            for i in range(depth)
        )
        self._init_weights()
        # the pyramid keeps PyTorch's default initialisation, as upstream
        self.fpn1 = nn.Sequential(
            nn.ConvTranspose2d(embed_dim, embed_dim, kernel_size=2, stride=2),
            get_norm(fpn_norm, embed_dim) or nn.Identity(),
            nn.GELU(),
            nn.ConvTranspose2d(embed_dim, embed_dim, kernel_size=2, stride=2),
        )
        self.fpn2 = nn.Sequential(nn.ConvTranspose2d(embed_dim, embed_dim, kernel_size=2, stride=2))
        self.fpn3 = nn.Identity()
        self.fpn4 = nn.MaxPool2d(kernel_size=2, stride=2)

        self._out_features = ["res2", "res3", "res4", "res5"]
        self._out_feature_channels = {name: embed_dim for name in self._out_features}
        self._out_feature_strides = {"res2": 4, "res3": 8, "res4": 16, "res5": 32}

    def _init_weights(self) -> None:
        """Upstream's: Linear weights truncated normal (std 0.02) with zero biases, LayerNorms 1 and 0, the class
        token truncated normal, each block's output projections (attn.proj, mlp.fc2) divided by sqrt(2 (i + 1));
        relative position tables and q/v biases start at zero, layer scales at ``layer_scale_init`` (timm's)."""
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.blocks.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        with torch.no_grad():
            for i, block in enumerate(self.blocks):
                block.attn.proj.weight.div_(math.sqrt(2.0 * (i + 1)))
                block.mlp.fc2.weight.div_(math.sqrt(2.0 * (i + 1)))

    @property
    def size_divisibility(self) -> int:
        return 32

    def layer_id(self, param_name: str) -> int:
        """Layer id for layer-wise LR decay (BEiT's ``LayerDecayOptimizerConstructor``) of a parameter name
        relative to the backbone: 0 for ``cls_token`` / ``patch_embed``, i + 1 for ``blocks.{i}``, ``num_layers
        + 1`` for the pyramid (``fpn*``); a layer's LR is scaled by ``decay ** (num_layers + 1 - layer_id)``."""
        return vit_layer_id(param_name, self.num_layers)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """x: [B, C_in, img_size, img_size]. Returns ``res2``..``res5`` [B, C, H/s, W/s], s = 4, 8, 16, 32."""
        if x.dim() != 4:
            raise ValueError(f"BEiT takes [B, C, H, W] inputs, got shape {tuple(x.shape)}.")
        B, _, height, width = x.shape
        if height != self.img_size or width != self.img_size:
            raise ValueError(
                f"BEiT: input size {height}x{width}, but the relative position bias is learned for {self.img_size}x"
                f"{self.img_size} inputs (MODEL.BEIT.IMG_SIZE). Train on {self.img_size} crops and infer with "
                f"MODEL.SEM_SEG_HEAD.TEST_MODE 'slide', TEST_CROP_SIZE ({self.img_size}, {self.img_size})."
            )
        g = self.grid
        x = self.pos_drop(torch.cat([self.cls_token.expand(B, -1, -1), self.patch_embed(x)], dim=1))
        maps = []
        for i, block in enumerate(self.blocks[: self.out_indices[-1] + 1]):
            if self.use_checkpoint and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
            if i in self.out_indices:
                maps.append(x[:, 1:].transpose(1, 2).reshape(B, self.embed_dim, g, g).contiguous())
        pyramid = (self.fpn1, self.fpn2, self.fpn3, self.fpn4)
        return {name: op(m) for name, op, m in zip(self._out_features, pyramid, maps)}

    def adapt_state_dict(self, state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """The BEiT helper's load-time conversion: ``relative_position_index`` buffers dropped, a shared
        ``rel_pos_bias`` table copied into each block, and tables of another window interpolated to this one."""
        state = {k: v for k, v in state.items() if not k.endswith("relative_position_index")}
        shared = state.pop(_SHARED_TABLE, None)
        if shared is not None:
            logger.info("Copied the checkpoint's shared relative position bias table into each of the %d blocks.",
                        self.num_layers)
            for i in range(self.num_layers):
                state[f"blocks.{i}.{_TABLE}"] = shared.clone()
        src_dst = set()
        dst_rows = (2 * self.grid - 1) ** 2 + _EXTRA_ENTRIES
        for key, table in list(state.items()):
            if not key.endswith(_TABLE) or table.dim() != 2 or table.shape[0] == dst_rows:
                continue
            src = math.isqrt(table.shape[0] - _EXTRA_ENTRIES)
            if src * src + _EXTRA_ENTRIES != table.shape[0]:
                continue  # not a square window's table: reported as a shape mismatch
            state[key] = resize_relative_position_table(table, 2 * self.grid - 1)
            src_dst.add(src)
        if src_dst:
            logger.info("Interpolated the checkpoint's relative position bias tables from %s to %dx%d offsets "
                        "(BEiT's geometric-progression bicubic interpolation).",
                        ", ".join(f"{s}x{s}" for s in sorted(src_dst)), 2 * self.grid - 1, 2 * self.grid - 1)
        return state

    @classmethod
    def from_config(cls, cfg, input_shape: Optional[ShapeSpec] = None) -> BEiT:
        """Arguments from ``cfg.MODEL.BEIT``; input channels from ``input_shape`` (default 3)."""
        b = cfg.MODEL.BEIT
        in_chans = input_shape.channels if input_shape is not None and input_shape.channels else 3
        return cls(
            img_size=b.IMG_SIZE, patch_size=b.PATCH_SIZE, in_chans=in_chans, embed_dim=b.EMBED_DIM, depth=b.DEPTH,
            num_heads=b.NUM_HEADS, mlp_ratio=b.MLP_RATIO, qkv_bias=b.QKV_BIAS, drop_path_rate=b.DROP_PATH_RATE,
            layer_scale_init=b.LAYER_SCALE_INIT, out_indices=list(b.OUT_INDICES), fpn_norm=b.FPN_NORM,
            use_checkpoint=b.USE_CHECKPOINT,
        )


@BACKBONE_REGISTRY.register()
def build_beit_backbone(cfg, input_shape: ShapeSpec) -> BEiT:
    """``MODEL.BACKBONE.NAME: "build_beit_backbone"``: BEiT with its feature pyramid from ``cfg.MODEL.BEIT``.

    Outputs ``res2``..``res5`` (strides 4, 8, 16, 32; EMBED_DIM channels each) for UPerNet. The defaults are
    RankSeg's UPerNet-BEiT-L/16 (640 px, depth 24, 16 heads, layer scale 1e-6, drop path 0.2, blocks 7, 11, 15,
    23); weights: the official ``beit_large_patch16_224_pt22k_ft22k.pth`` or timm's
    ``beit_large_patch16_224.in22k_ft_in22k`` (relative position tables interpolated from 14x14 to 40x40 windows
    on load). ``MODEL.BACKBONE.FREEZE_AT`` is not used (upstream trains every block).
    """
    model = BEiT.from_config(cfg, input_shape)
    logger.debug("Built BEiT with %d parameters.", sum(p.numel() for p in model.parameters()))
    return model

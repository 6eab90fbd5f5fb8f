"""Segmenter's Vision Transformer (mmseg's ``VisionTransformer`` as RankSeg's Segmenter configs use it), built
from timm's blocks and named as timm's ``VisionTransformer``.

Parameters: ``patch_embed.proj``, ``cls_token``, ``pos_embed`` [1, 1 + g*g, C] (g = IMG_SIZE / PATCH_SIZE),
``blocks.{i}.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}``, ``norm`` (FINAL_NORM) and, in the
class-embedding variant, ``cls_emb`` [1, K, C]. A timm state dict (``.pth`` / ``.safetensors``, e.g.
``vit_base_patch16_384.augreg_in21k_ft_in1k``) therefore loads by name through ``MODEL.WEIGHTS``, and Google's jax
``.npz`` files (Segmenter's ``B_16-i21k-...-res_384.npz``) through :func:`load_jax_npz`. A pretrained ``pos_embed``
of another grid is resized to g x g on load (:meth:`ViT.adapt_state_dict`, as mmseg's ``init_weights``).

Behaviour follows mmseg's: class token, learned position embedding resized (bicubic, class entry kept) to the
input's patch grid, pre-norm blocks with drop path rising linearly over depth, LayerNorm eps 1e-6, the final norm
on the last block's tokens only, and outputs without the class token. Two deliberate differences: the embedding is
resized whenever the grid differs (mmseg compares token counts, so a transposed grid went unresized), and inputs
must be multiples of the patch size (mmseg pads them; here the model pads to ``size_divisibility``).
"""

from __future__ import annotations

import logging
import math
from functools import partial
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from ...layers import ShapeSpec
from ..registry import BACKBONE_REGISTRY
from .backbone import Backbone
from .timm_import import import_timm

__all__ = ["ViT", "build_vit_backbone", "load_jax_npz", "resize_pos_embed", "vit_layer_id"]

logger = logging.getLogger(__name__)


def resize_pos_embed(pos_embed: torch.Tensor, new_grid: Tuple[int, int], old_grid: Tuple[int, int],
                     mode: str = "bicubic") -> torch.Tensor:
    """mmseg's ``resize_pos_embed``: [1, 1 + gh*gw, C] for an ``old_grid`` (gh, gw) -> [1, 1 + h*w, C] for
    ``new_grid`` (h, w); the grid part is interpolated (``align_corners=False``), the class entry kept as is."""
    gh, gw = old_grid
    cls_entry, grid = pos_embed[:, :1], pos_embed[:, -gh * gw:]
    grid = grid.reshape(1, gh, gw, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid.float(), size=tuple(new_grid), mode=mode, align_corners=False).to(pos_embed.dtype)
    return torch.cat([cls_entry, grid.flatten(2).transpose(1, 2)], dim=1)


def vit_layer_id(param_name: str, num_layers: int) -> int:
    """BEiT's ``get_num_layer_for_vit`` (layer-wise LR decay) for a name relative to the backbone: the embeddings
    (``cls_token``, ``mask_token``, ``pos_embed``, ``patch_embed.*``) 0, ``blocks.{i}.*`` i + 1, anything else
    (``norm``, ``cls_emb``, ``fpn*``, ...) ``num_layers + 1``."""
    if param_name in ("cls_token", "mask_token", "pos_embed") or param_name.startswith("patch_embed."):
        return 0
    if param_name.startswith("blocks."):
        return int(param_name.split(".")[1]) + 1
    return num_layers + 1


def resolve_out_indices(out_indices: Sequence[int], depth: int, key: str) -> list:
    """Block indices (negative ones count from the end) -> sorted, checked list; ``key`` names the config key."""
    resolved = sorted({i + depth if i < 0 else i for i in out_indices})
    if not resolved or any(not 0 <= i < depth for i in resolved) or len(resolved) != len(out_indices):
        raise ValueError(f"{key}={list(out_indices)}: give distinct block indices in [0, {depth}) (or -1 for the "
                         f"last block) for a backbone of depth {depth}.")
    return resolved


class ViT(Backbone):
    """Segmenter's ViT returning ``{"vit{i}": [B, C, H/p, W/p]}`` for each block index i of ``out_indices`` (the
    class token removed; the last block's tokens after the final norm), and with the class-embedding variant also
    ``"cls_emb"``: [B, K, C], the K class tokens as the last returned block leaves them.

    Args:
        img_size: side of the square image the position embedding is stored for (mmseg's ``img_size``, the
            training crop): g = img_size / patch_size.
        patch_size: patch side p (the stride of every output).
        in_chans: input channels.
        embed_dim: channels C.
        depth: number of blocks.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width / C.
        qkv_bias: bias in the qkv projection.
        drop_rate: dropout after the position embedding, the attention projection and the MLP.
        attn_drop_rate: dropout on the attention weights.
        drop_path_rate: stochastic depth, rising linearly from 0 (first block) to this (last block).
        final_norm: LayerNorm ``norm`` (eps 1e-6) on the last block's tokens.
        out_indices: block indices (0-based, -1 = last) whose maps are returned; blocks after the largest are not run.
        num_cls_emb: K, the learned class tokens of the class-embedding variant (used when
            ``cls_emb_start_layer >= 0``).
        cls_emb_start_layer: the block before which ``cls_emb`` is appended to the tokens (-1: no class embedding).
        use_checkpoint: recompute each block in the backward pass to save memory.
    """

    def __init__(self, *, img_size: int = 512, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768,
                 depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop_rate: float = 0.0, attn_drop_rate: float = 0.0, drop_path_rate: float = 0.1,
                 final_norm: bool = True, out_indices: Sequence[int] = (-1,), num_cls_emb: int = 0,
                 cls_emb_start_layer: int = -1, use_checkpoint: bool = False):
        super().__init__()
        timm = import_timm("The ViT backbone")
        if img_size % patch_size != 0:
            raise ValueError(f"MODEL.VIT.IMG_SIZE={img_size} is not a multiple of MODEL.VIT.PATCH_SIZE={patch_size}.")
        if embed_dim % num_heads != 0:
            raise ValueError(f"MODEL.VIT.EMBED_DIM={embed_dim} cannot be split into MODEL.VIT.NUM_HEADS={num_heads} "
                             "heads.")
        self.out_indices = resolve_out_indices(out_indices, depth, "MODEL.VIT.OUT_INDICES")
        if cls_emb_start_layer >= 0:
            if not cls_emb_start_layer <= self.out_indices[-1]:
                raise ValueError(
                    f"MODEL.VIT.CLS_EMB_START_LAYER={cls_emb_start_layer}: the class embedding must enter at or "
                    f"before the last returned block ({self.out_indices[-1]}, MODEL.VIT.OUT_INDICES), which gives "
                    "it back; use -1 for no class embedding."
                )
            if num_cls_emb <= 0:
                raise ValueError(f"The class-embedding variant (MODEL.VIT.CLS_EMB_START_LAYER={cls_emb_start_layer}) "
                                 "needs K > 0 class tokens: set MODEL.SEM_SEG_HEAD.NUM_CLASSES.")
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.num_layers = depth
        self.grid = img_size // patch_size
        self.cls_emb_start_layer = cls_emb_start_layer if cls_emb_start_layer >= 0 else -1
        self.use_checkpoint = use_checkpoint

        self.patch_embed = timm.layers.PatchEmbed(img_size=img_size, patch_size=patch_size, in_chans=in_chans,
                                                  embed_dim=embed_dim, strict_img_size=False)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid * self.grid + 1, embed_dim))
        self.cls_emb = nn.Parameter(torch.zeros(1, num_cls_emb, embed_dim)) if self.cls_emb_start_layer >= 0 else None
        self.pos_drop = nn.Dropout(drop_rate)
        norm_layer = partial(nn.LayerNorm, eps=1e-6)
        dpr = torch.linspace(0, drop_path_rate, depth, device="cpu").tolist()  # as mmseg (float32 steps)
        self.blocks = nn.ModuleList(
            timm.models.vision_transformer.Block(
                embed_dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, proj_drop=drop_rate,
                attn_drop=attn_drop_rate, drop_path=dpr[i], norm_layer=norm_layer,
            )
            for i in range(depth)
        )
        self.norm = norm_layer(embed_dim) if final_norm else None

        self._out_features = [f"vit{i}" for i in self.out_indices]
        self._out_feature_channels = {name: embed_dim for name in self._out_features}
        self._out_feature_strides = {name: patch_size for name in self._out_features}
        self._init_weights()

    def _init_weights(self) -> None:
        """mmseg's initialisation of its ViT (timm's 'jax' scheme)."""
        for p in (self.pos_embed, self.cls_token, self.cls_emb):
            if p is not None:
                nn.init.trunc_normal_(p, std=0.02)
        for name, m in self.named_modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    if ".mlp." in name:
                        nn.init.normal_(m.bias, std=1e-6)
                    else:
                        nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def size_divisibility(self) -> int:
        return self.patch_size

    @property
    def num_cls_emb(self) -> int:
        """K, the class tokens returned as ``"cls_emb"`` (0 without the class-embedding variant)."""
        return 0 if self.cls_emb is None else self.cls_emb.shape[1]

    def layer_id(self, param_name: str) -> int:
        """Layer id for layer-wise LR decay of a parameter name relative to the backbone (:func:`vit_layer_id`):
        0 for the embeddings, i + 1 for ``blocks.{i}``, ``num_layers + 1`` for the rest; BEiT's optimizer scales
        a layer's LR by ``decay ** (num_layers + 1 - layer_id)``."""
        return vit_layer_id(param_name, self.num_layers)

    def position_embedding(self, grid: Tuple[int, int]) -> torch.Tensor:
        """[1, 1 + h*w, C]: ``pos_embed`` resized from g x g to the patch grid (h, w) (as stored if equal)."""
        if tuple(grid) == (self.grid, self.grid):
            return self.pos_embed
        return resize_pos_embed(self.pos_embed, grid, (self.grid, self.grid))

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """x: [B, C_in, H, W], H and W multiples of the patch size. Returns ``vit{i}`` [B, C, H/p, W/p] (and
        ``cls_emb`` [B, K, C])."""
        if x.dim() != 4:
            raise ValueError(f"ViT takes [B, C, H, W] inputs, got shape {tuple(x.shape)}.")
        B, _, H, W = x.shape
        p = self.patch_size
        if H % p or W % p:
            raise ValueError(f"ViT: input size {H}x{W} is not a multiple of the patch size {p} "
                             "(MODEL.VIT.PATCH_SIZE); pad it to backbone.size_divisibility.")
        h, w = H // p, W // p
        x = torch.cat([self.cls_token.expand(B, -1, -1), self.patch_embed(x)], dim=1)
        x = self.pos_drop(x + self.position_embedding((h, w)))
        outputs = {}
        for i, block in enumerate(self.blocks[: self.out_indices[-1] + 1]):
            if i == self.cls_emb_start_layer:
                x = torch.cat([x, self.cls_emb.expand(B, -1, -1)], dim=1)
            if self.use_checkpoint and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
            if i == self.num_layers - 1 and self.norm is not None:
                x = self.norm(x)
            if i in self.out_indices:
                outputs[f"vit{i}"] = x[:, 1:1 + h * w].transpose(1, 2).reshape(B, self.embed_dim, h, w)
        if self.cls_emb is not None:
            outputs["cls_emb"] = x[:, 1 + h * w:]
        return outputs

    def adapt_state_dict(self, state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """A ``pos_embed`` [1, 1 + n*n, C] of another (square) grid is resized to g x g, as mmseg does for
        pretrained weights (e.g. a 384 px ImageNet model, n = 24, into a 512 px Segmenter, g = 32)."""
        state = dict(state)
        pos = state.get("pos_embed")
        if pos is None or tuple(pos.shape) == tuple(self.pos_embed.shape) or pos.dim() != 3 \
                or pos.shape[-1] != self.embed_dim:
            return state
        n = math.isqrt(pos.shape[1] - 1)
        if n * n != pos.shape[1] - 1:
            return state  # not a square grid plus a class entry: reported as a shape mismatch
        logger.info("Resized the checkpoint's pos_embed from a %dx%d to a %dx%d grid (bicubic, class entry kept).",
                    n, n, self.grid, self.grid)
        state["pos_embed"] = resize_pos_embed(pos, (self.grid, self.grid), (n, n))
        return state

    @classmethod
    def from_config(cls, cfg, input_shape: Optional[ShapeSpec] = None) -> ViT:
        """Arguments from ``cfg.MODEL.VIT`` (K of the class embedding: ``MODEL.SEM_SEG_HEAD.NUM_CLASSES``)."""
        v = cfg.MODEL.VIT
        in_chans = input_shape.channels if input_shape is not None and input_shape.channels else 3
        return cls(
            img_size=v.IMG_SIZE, patch_size=v.PATCH_SIZE, in_chans=in_chans, embed_dim=v.EMBED_DIM, depth=v.DEPTH,
            num_heads=v.NUM_HEADS, mlp_ratio=v.MLP_RATIO, qkv_bias=v.QKV_BIAS, drop_path_rate=v.DROP_PATH_RATE,
            final_norm=v.FINAL_NORM, out_indices=list(v.OUT_INDICES),
            num_cls_emb=cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES if v.CLS_EMB_START_LAYER >= 0 else 0,
            cls_emb_start_layer=v.CLS_EMB_START_LAYER, use_checkpoint=v.USE_CHECKPOINT,
        )


@BACKBONE_REGISTRY.register()
def build_vit_backbone(cfg, input_shape: ShapeSpec) -> ViT:
    """``MODEL.BACKBONE.NAME: "build_vit_backbone"``: Segmenter's ViT from ``cfg.MODEL.VIT``.

    Outputs ``vit{i}`` [B, EMBED_DIM, H/PATCH_SIZE, W/PATCH_SIZE] for each block index i of ``OUT_INDICES`` (-1:
    the last block, e.g. ``vit11`` for ViT-B/16, ``vit23`` for ViT-L/16); with ``CLS_EMB_START_LAYER >= 0`` also
    ``cls_emb`` [B, MODEL.SEM_SEG_HEAD.NUM_CLASSES, EMBED_DIM] (not in ``output_shape()``: it is not a map).
    ``MODEL.BACKBONE.FREEZE_AT`` is not used (Segmenter trains every block).

    - ViT-B/16 (the defaults): ``IMG_SIZE: 512`` (480 on Pascal Context), weights
      ``B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.01-res_384.npz``
      or timm's ``vit_base_patch16_384.augreg_in21k_ft_in1k``.
    - ViT-L/16: ``IMG_SIZE: 640, EMBED_DIM: 1024, DEPTH: 24, NUM_HEADS: 16``, weights ``L_16-i21k-...-res_384.npz``
      or timm's ``vit_large_patch16_384.augreg_in21k_ft_in1k``.
    - The class-embedding variant (``backbone-cls-emb`` configs): ``CLS_EMB_START_LAYER: 11``.
    """
    model = ViT.from_config(cfg, input_shape)
    logger.debug("Built ViT with %d parameters.", sum(p.numel() for p in model.parameters()))
    return model


def load_jax_npz(path: str) -> Dict[str, torch.Tensor]:
    """The timm-named state dict of a Google jax ViT checkpoint (``.npz`` of vit_jax / augreg, the files Segmenter
    starts from), read by timm's own loader (``VisionTransformer.load_pretrained``) into a timm ViT of the file's
    shape (patch size, width, depth, heads, MLP width and position grid are read from the arrays), so nothing is
    resized here; the classifier comes along as ``head.*``.

    Raises:
        ValueError: the file is not a classic ViT ``.npz`` (names ``[opt/target/]Transformer/encoderblock_{i}/...``).
    """
    timm = import_timm(f"Reading the jax ViT checkpoint {path}")
    with np.load(path) as w:
        names = set(w.files)
        prefix = next((p for p in ("", "opt/target/") if f"{p}Transformer/encoderblock_0/LayerNorm_0/scale" in names),
                      None)
        if prefix is None or f"{prefix}cls" not in names:
            raise ValueError(f"{path} is not a jax ViT checkpoint with a class token in vit_jax's layout "
                             "('Transformer/encoderblock_0/...', 'cls', 'embedding/kernel').")
        patch, _, in_chans, width = w[f"{prefix}embedding/kernel"].shape
        tokens = w[f"{prefix}Transformer/posembed_input/pos_embedding"].shape[1]
        block = f"{prefix}Transformer/encoderblock_0/"
        heads = w[f"{block}MultiHeadDotProductAttention_1/query/kernel"].shape[1]
        hidden = w[f"{block}MlpBlock_3/Dense_0/kernel"].shape[1]
        num_classes = w[f"{prefix}head/bias"].shape[0] if f"{prefix}head/bias" in names else 0
    blocks = f"{prefix}Transformer/encoderblock_"
    depth = sum(1 for n in names if n.startswith(blocks) and n.endswith("/LayerNorm_0/scale"))
    grid = math.isqrt(tokens - 1)
    model = timm.models.vision_transformer.VisionTransformer(
        img_size=grid * patch, patch_size=patch, in_chans=in_chans, num_classes=num_classes, embed_dim=width,
        depth=depth, num_heads=heads, mlp_ratio=hidden / width, qkv_bias=True, class_token=True, weight_init="skip",
    )
    model.load_pretrained(path, prefix=prefix)
    logger.info("Read %s with timm: ViT patch %d, width %d, depth %d, %d heads, %dx%d position grid.", path, patch,
                width, depth, heads, grid, grid)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}

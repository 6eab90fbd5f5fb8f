"""Segmenter's mask transformer head (``MaskTransformerHead``), with RankSeg's variant (upstream's
``MaskTransformerRankSegHead``) when ``MODEL.RANKSEG.FLAG`` is on.

Baseline (Strudel et al., 2021): the patch tokens of the backbone's last map, projected to ``d_model``, and K
learnable class tokens go through ``n_layers`` transformer blocks; the logit of class c at a patch is the cosine
similarity of the projected patch (``proj_patch``) and class (``proj_classes``) tokens, then ``LayerNorm(K)``.

RankSeg: the first block scores the categories. It reads the map average-pooled to ``pool_size`` x ``pool_size``
plus the K class tokens; its class tokens, after ``decoder_norm2`` and the group-wise ``ml_fc``, give the image-level
logits. The image-adapted class tokens of the top-k categories, in rank order, then join *all* patch tokens (only
projected, not through the first block) for the remaining blocks; the cosine logits of the k ranked classes go
through ``LayerNorm(k)`` (``mask_norm``: the rank-oriented temperatures). With ``pool_size`` 0 (upstream's
``downsample=None``) the first block reads every patch instead, and its patch tokens go on to the other blocks.
Upstream gathers the top-k tokens with a
reshape that is right only for one image per device; here each image gathers its own.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from ...config import ConfigError
from ...layers import ShapeSpec
from ...utils.precision import Float32LayerNorm
from ..rankseg.multilabel_head import Block, GroupWiseLinear
from ..registry import SEM_SEG_HEAD_REGISTRY
from .common import check_in_features

__all__ = ["MaskTransformerHead"]

Selector = Callable[[torch.Tensor], torch.Tensor]
"""Image logits [B, K] -> the selected categories [B, k], best first."""


@SEM_SEG_HEAD_REGISTRY.register()
class MaskTransformerHead(nn.Module):
    """Segmenter's decoder; with ``topk`` set, RankSeg's (see the module docstring).

    Parameter names are upstream's: ``proj_dec``, ``cls_emb``, ``blocks.{i}``, ``decoder_norm``, ``proj_patch``,
    ``proj_classes``, ``mask_norm``; RankSeg adds ``decoder_norm2`` and ``ml_fc`` (``W``, ``b``).

    Args:
        d_encoder: channels of the backbone map ``in_feature``. num_classes: K.
        n_layers: transformer blocks (2 for the baseline, 3 for RankSeg: the first one ranks).
        n_heads, d_model, d_ff, dropout: of the blocks; drop_path_rate: stochastic depth, linear over the blocks.
        topk: RankSeg's k (None: the baseline). pool_size: the map's pooled size for the ranking block (0: unpooled).
        cls_emb_from_backbone: the class tokens are the backbone's (its ``"cls_emb"`` output, [B, K, d_model];
            upstream's ``backbone-cls-emb`` configs) instead of the head's own ``cls_emb``.
        in_feature: the backbone map read.
    """

    ranks_categories: bool
    """Whether the head computes RankSeg's image-level logits itself (:meth:`forward_ranked`)."""

    def __init__(self, d_encoder: int, num_classes: int, *, n_layers: int, n_heads: int, d_model: int, d_ff: int,
                 dropout: float = 0.1, drop_path_rate: float = 0.0, topk: Optional[int] = None,
                 pool_size: int = 8, cls_emb_from_backbone: bool = False, in_feature: str = "res5"):
        super().__init__()
        if topk is not None and n_layers < 2:
            raise ConfigError(f"MODEL.SEGMENTER.N_LAYERS={n_layers}: RankSeg's Segmenter head needs at least 2 "
                              "blocks (the first ranks the categories).")
        self.num_classes = num_classes
        self.in_feature = in_feature
        self.topk = topk
        self.ranks_categories = topk is not None
        self.cls_emb_from_backbone = cls_emb_from_backbone
        rates = torch.linspace(0, drop_path_rate, n_layers, device="cpu").tolist()  # also under a meta device
        self.blocks = nn.ModuleList(Block(d_model, n_heads, d_ff, dropout, rate) for rate in rates)
        self.proj_dec = nn.Linear(d_encoder, d_model)
        self.decoder_norm = nn.LayerNorm(d_model)
        self.mask_norm = Float32LayerNorm(topk if topk is not None else num_classes)
        self.apply(_init_weights)
        if not cls_emb_from_backbone:
            self.cls_emb = nn.Parameter(torch.empty(1, num_classes, d_model))
            nn.init.trunc_normal_(self.cls_emb, std=0.02)
        scale = d_model ** -0.5
        self.proj_patch = nn.Parameter(scale * torch.randn(d_model, d_model))
        self.proj_classes = nn.Parameter(scale * torch.randn(d_model, d_model))
        if topk is not None:
            self.decoder_norm2 = nn.LayerNorm(d_model)
            self.ml_fc = GroupWiseLinear(num_classes, d_model)
            self.pooling = nn.AdaptiveAvgPool2d(pool_size) if pool_size > 0 else None

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]) -> MaskTransformerHead:
        """MODEL.SEM_SEG_HEAD.{IN_FEATURES, NUM_CLASSES}, MODEL.SEGMENTER.*, and with RankSeg MODEL.RANKSEG.{TOPK,
        POOL_SIZE}."""
        head, seg = cfg.MODEL.SEM_SEG_HEAD, cfg.MODEL.SEGMENTER
        check_in_features(head.IN_FEATURES, input_shape, "MODEL.SEM_SEG_HEAD.IN_FEATURES")
        if len(head.IN_FEATURES) != 1:
            raise ConfigError(f"MaskTransformerHead reads one map; MODEL.SEM_SEG_HEAD.IN_FEATURES="
                              f"{list(head.IN_FEATURES)}.")
        if seg.CLS_EMB_FROM_BACKBONE:
            # The ViT returns its class tokens as "cls_emb" beside its maps but not in output_shape() (not a map).
            vit = cfg.MODEL.BACKBONE.NAME == "build_vit_backbone"
            if not ("cls_emb" in input_shape or (vit and cfg.MODEL.VIT.CLS_EMB_START_LAYER >= 0)):
                raise ConfigError("MODEL.SEGMENTER.CLS_EMB_FROM_BACKBONE needs a backbone that returns class tokens "
                                  "('cls_emb'): set the ViT's class-embedding start layer "
                                  "(MODEL.VIT.CLS_EMB_START_LAYER).")
            if vit and cfg.MODEL.VIT.EMBED_DIM != seg.D_MODEL:
                raise ConfigError(f"MODEL.SEGMENTER.CLS_EMB_FROM_BACKBONE: the backbone's class tokens are "
                                  f"MODEL.VIT.EMBED_DIM={cfg.MODEL.VIT.EMBED_DIM} wide; MODEL.SEGMENTER.D_MODEL="
                                  f"{seg.D_MODEL} must equal it.")
        rankseg = cfg.MODEL.RANKSEG
        return cls(input_shape[head.IN_FEATURES[0]].channels, head.NUM_CLASSES, n_layers=seg.N_LAYERS,
                   n_heads=seg.N_HEADS, d_model=seg.D_MODEL, d_ff=seg.D_FF, dropout=seg.DROPOUT,
                   drop_path_rate=seg.DROP_PATH_RATE, topk=rankseg.TOPK if rankseg.FLAG else None,
                   pool_size=rankseg.POOL_SIZE, cls_emb_from_backbone=seg.CLS_EMB_FROM_BACKBONE,
                   in_feature=head.IN_FEATURES[0])

    def _inputs(self, features: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """(patch map [B, C, H, W], class tokens [B, K, d_model])."""
        x = features[self.in_feature]
        cls_emb = features["cls_emb"] if self.cls_emb_from_backbone else self.cls_emb.expand(x.shape[0], -1, -1)
        return x, cls_emb

    def _cosine_logits(self, tokens: torch.Tensor, num_cls: int, size: Tuple[int, int]) -> torch.Tensor:
        """Blocks' output [B, HW + n, d] -> ``mask_norm``ed cosine logits [B, n, H, W]."""
        tokens = self.decoder_norm(tokens)
        patches = F.normalize(tokens[:, :-num_cls] @ self.proj_patch, dim=-1)
        classes = F.normalize(tokens[:, -num_cls:] @ self.proj_classes, dim=-1)
        masks = self.mask_norm(patches @ classes.transpose(1, 2))  # [B, HW, n]
        return masks.transpose(1, 2).reshape(tokens.shape[0], num_cls, *size)

    def forward(self, features: Dict[str, torch.Tensor], topk_index: Optional[torch.Tensor] = None
                ) -> torch.Tensor:
        """The baseline: logits [B, K, H, W] at the map's resolution."""
        if self.ranks_categories or topk_index is not None:
            raise ValueError("The RankSeg Segmenter head ranks the categories itself: call forward_ranked.")
        x, cls_emb = self._inputs(features)
        tokens = torch.cat((self.proj_dec(x.flatten(2).transpose(1, 2)), cls_emb), dim=1)
        for block in self.blocks:
            tokens = block(tokens)
        return self._cosine_logits(tokens, self.num_classes, x.shape[-2:])

    def forward_ranked(self, features: Dict[str, torch.Tensor], select: Selector
                       ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """RankSeg: (logits [B, k, H, W] over the selection in rank order, image logits [B, K], selection [B, k]).

        Args:
            select: image logits -> selected categories [B, k] (the top-k, or the oracle's ranking).
        """
        x, cls_emb = self._inputs(features)
        patches = self.proj_dec(x.flatten(2).transpose(1, 2))  # [B, HW, d]
        if self.pooling is not None:
            pooled = self.proj_dec(self.pooling(x).flatten(2).transpose(1, 2))  # [B, pool^2, d]
            ranked_cls = self.blocks[0](torch.cat((pooled, cls_emb), dim=1))[:, -self.num_classes:]
        else:  # unpooled: every patch goes through the ranking block, and on from there
            tokens = self.blocks[0](torch.cat((patches, cls_emb), dim=1))
            patches, ranked_cls = tokens[:, :-self.num_classes], tokens[:, -self.num_classes:]
        ranked_cls = self.decoder_norm2(ranked_cls)
        image_logits = self.ml_fc(ranked_cls)  # [B, K]
        topk_index = select(image_logits)
        chosen = torch.gather(ranked_cls, 1, topk_index.unsqueeze(-1).expand(-1, -1, ranked_cls.shape[-1]))
        tokens = torch.cat((patches, chosen), dim=1)
        for block in self.blocks[1:]:
            tokens = block(tokens)
        return self._cosine_logits(tokens, topk_index.shape[1], x.shape[-2:]), image_logits, topk_index


def _init_weights(module: nn.Module) -> None:
    """Segmenter's: linear layers truncated normal (std 0.02) with zero bias, LayerNorms 1 and 0."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)

"""Mask2Former's ``MultiScaleMaskedTransformerDecoder`` (masked cross-attention over 3 scales)."""

from __future__ import annotations

import logging
from typing import Dict, List, Optional

import torch
from torch import nn
from torch.nn import functional as F

from ...layers import Conv2d, c2_xavier_fill
from ...utils.precision import autocast_dtype
from ..registry import TRANSFORMER_DECODER_REGISTRY
from .position_encoding import PositionEmbeddingSine
from .prediction_heads import MLP, class_logits, make_class_embed

logger = logging.getLogger(__name__)

NUM_FEATURE_LEVELS = 3


class SelfAttentionLayer(nn.Module):
    """Self-attention among queries with residual + LayerNorm (post- or pre-norm)."""

    def __init__(self, d_model: int, nhead: int, dropout: float = 0.0, normalize_before: bool = False):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.normalize_before = normalize_before
        _xavier_init(self)

    def forward(self, tgt: torch.Tensor, query_pos: Optional[torch.Tensor] = None) -> torch.Tensor:
        """tgt, query_pos: [Q, B, C]."""
        x = self.norm(tgt) if self.normalize_before else tgt
        q = k = x if query_pos is None else x + query_pos
        tgt = tgt + self.dropout(self.self_attn(q, k, value=x, need_weights=False)[0])
        return tgt if self.normalize_before else self.norm(tgt)


class CrossAttentionLayer(nn.Module):
    """Queries attend to one feature level, restricted by ``memory_mask`` (masked attention)."""

    def __init__(self, d_model: int, nhead: int, dropout: float = 0.0, normalize_before: bool = False):
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.normalize_before = normalize_before
        _xavier_init(self)

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor, memory_mask: Optional[torch.Tensor] = None,
                pos: Optional[torch.Tensor] = None, query_pos: Optional[torch.Tensor] = None) -> torch.Tensor:
        """tgt: [Q, B, C]; memory, pos: [HW, B, C]; memory_mask: [B*heads, Q, HW] bool (True = blocked)."""
        x = self.norm(tgt) if self.normalize_before else tgt
        attended = self.multihead_attn(
            query=x if query_pos is None else x + query_pos,
            key=memory if pos is None else memory + pos,
            value=memory,
            attn_mask=memory_mask,
            need_weights=False,
        )[0]
        tgt = tgt + self.dropout(attended)
        return tgt if self.normalize_before else self.norm(tgt)


class FFNLayer(nn.Module):
    """Two-layer ReLU MLP with residual + LayerNorm."""

    def __init__(self, d_model: int, dim_feedforward: int = 2048, dropout: float = 0.0,
                 normalize_before: bool = False):
        super().__init__()
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.normalize_before = normalize_before
        _xavier_init(self)

    def forward(self, tgt: torch.Tensor) -> torch.Tensor:
        x = self.norm(tgt) if self.normalize_before else tgt
        tgt = tgt + self.dropout(self.linear2(self.dropout(F.relu(self.linear1(x)))))
        return tgt if self.normalize_before else self.norm(tgt)


def _xavier_init(module: nn.Module) -> None:
    for p in module.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)


def _make_attn_mask(mask_logits: torch.Tensor, target_size, num_heads: int) -> torch.Tensor:
    """Masked-attention mask from predicted masks, for images or clips.

    Args:
        mask_logits: [B, Q, H, W] (images) or [B, Q, T, H, W] (clips) predicted mask logits.
        target_size: (h, w) of the level attended next.
        num_heads: attention heads.
    Returns:
        [B * heads, Q, h*w] (images) or [B * heads, Q, T*h*w] (clips, frame-major like the memory) bool, True
        where attention is blocked (sigmoid < 0.5). A query whose row would be fully blocked attends everywhere
        instead.
    """
    return _attn_mask_from_logits(_resize(mask_logits, target_size), num_heads)


def _resize(maps: torch.Tensor, size) -> torch.Tensor:
    """Bilinear resize (``align_corners=False``) of the last two axes of [N, C, H, W] or [N, C, T, H, W] maps."""
    resized = F.interpolate(maps.reshape(-1, *maps.shape[-3:]), size=size, mode="bilinear", align_corners=False)
    return resized.reshape(*maps.shape[:-2], *resized.shape[-2:])


def _attn_mask_from_logits(mask_logits: torch.Tensor, num_heads: int) -> torch.Tensor:
    """:func:`_make_attn_mask` for mask logits [B, Q, (T,) h, w] already at the attended level's size."""
    b, q = mask_logits.shape[:2]
    blocked = mask_logits.reshape(b, q, -1) < 0.0  # sigmoid(x) < 0.5  <=>  x < 0
    blocked = blocked & ~blocked.all(dim=-1, keepdim=True)
    return blocked.unsqueeze(1).expand(-1, num_heads, -1, -1).flatten(0, 1).detach()


@TRANSFORMER_DECODER_REGISTRY.register()
class MultiScaleMaskedTransformerDecoder(nn.Module):
    """Learnable queries refined by (masked cross-attention -> self-attention -> FFN) layers that cycle
    through 3 feature levels, with a class and mask prediction after every layer.

    Args:
        in_channels: channels of the multi-scale features.
        mask_classification: must be True (mask classification model).
        num_classes: K (the classifier has K + 1 outputs; the last is "no object").
        hidden_dim, num_queries, nheads, dim_feedforward: transformer sizes.
        dec_layers: number of decoder layers (upstream's DEC_LAYERS - 1).
        pre_norm: pre-LayerNorm layers.
        mask_dim: channels of the mask embedding (= pixel decoder's mask_features).
        enforce_input_project: 1x1 conv on the inputs even when in_channels == hidden_dim.
        norm: cosine classifier (``SEM_SEG_HEAD.USE_LAYERNORM``): logits are cosine similarities between the
            normalised query feature and the normalised rows of ``class_embed`` (which has no bias).
    """

    _version = 2

    def __init__(self, in_channels: int, mask_classification: bool = True, *, num_classes: int, hidden_dim: int,
                 num_queries: int, nheads: int, dim_feedforward: int, dec_layers: int, pre_norm: bool,
                 mask_dim: int, enforce_input_project: bool, norm: bool = False):
        super().__init__()
        if not mask_classification:
            raise ValueError("MultiScaleMaskedTransformerDecoder only supports mask classification.")
        self.mask_classification = mask_classification
        self.pe_layer = PositionEmbeddingSine(hidden_dim // 2, normalize=True)
        self.num_heads = nheads
        self.num_layers = dec_layers
        self.norm = norm
        self.transformer_self_attention_layers = nn.ModuleList(
            SelfAttentionLayer(hidden_dim, nheads, 0.0, pre_norm) for _ in range(dec_layers)
        )
        self.transformer_cross_attention_layers = nn.ModuleList(
            CrossAttentionLayer(hidden_dim, nheads, 0.0, pre_norm) for _ in range(dec_layers)
        )
        self.transformer_ffn_layers = nn.ModuleList(
            FFNLayer(hidden_dim, dim_feedforward, 0.0, pre_norm) for _ in range(dec_layers)
        )
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.num_queries = num_queries
        self.query_feat = nn.Embedding(num_queries, hidden_dim)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.num_feature_levels = NUM_FEATURE_LEVELS
        self.level_embed = nn.Embedding(NUM_FEATURE_LEVELS, hidden_dim)
        self.input_proj = nn.ModuleList()
        for _ in range(NUM_FEATURE_LEVELS):
            if in_channels != hidden_dim or enforce_input_project:
                proj = Conv2d(in_channels, hidden_dim, kernel_size=1)
                c2_xavier_fill(proj)
                self.input_proj.append(proj)
            else:
                self.input_proj.append(nn.Sequential())
        self.class_embed = make_class_embed(hidden_dim, num_classes, norm)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)

    @classmethod
    def from_config(cls, cfg, in_channels: int, mask_classification: bool = True
                    ) -> MultiScaleMaskedTransformerDecoder:
        return cls(in_channels, mask_classification, **cls._config_kwargs(cfg))

    @staticmethod
    def _config_kwargs(cfg) -> Dict[str, object]:
        """The keyword arguments of ``__init__`` read from MODEL.MASK_FORMER and MODEL.SEM_SEG_HEAD."""
        mf = cfg.MODEL.MASK_FORMER
        if mf.DEC_LAYERS < 1:
            raise ValueError(f"MODEL.MASK_FORMER.DEC_LAYERS={mf.DEC_LAYERS} must be >= 1.")
        return dict(
            num_classes=cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            hidden_dim=mf.HIDDEN_DIM,
            num_queries=mf.NUM_OBJECT_QUERIES,
            nheads=mf.NHEADS,
            dim_feedforward=mf.DIM_FEEDFORWARD,
            # DEC_LAYERS counts the prediction on the learnable queries too (upstream's convention)
            dec_layers=mf.DEC_LAYERS - 1,
            pre_norm=mf.PRE_NORM,
            mask_dim=cfg.MODEL.SEM_SEG_HEAD.MASK_DIM,
            enforce_input_project=mf.ENFORCE_INPUT_PROJ,
            norm=cfg.MODEL.SEM_SEG_HEAD.USE_LAYERNORM,
        )

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        version = local_metadata.get("version", None)
        if version is None or version < 2:
            renamed = False
            for key in [k for k in state_dict if k.startswith(prefix) and "static_query" in k]:
                state_dict[key.replace("static_query", "query_feat")] = state_dict.pop(key)
                renamed = True
            if renamed:
                logger.warning("%s: renamed old 'static_query' weights to 'query_feat'.", type(self).__name__)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def forward(self, x: List[torch.Tensor], mask_features: torch.Tensor, mask: Optional[torch.Tensor] = None
                ) -> Dict[str, object]:
        """
        Args:
            x: 3 feature maps [B, C, h_l, w_l], coarsest first.
            mask_features: [B, mask_dim, H, W].
            mask: unused (padding masks do not change results upstream).
        Returns:
            pred_logits [B, Q, K+1], pred_masks [B, Q, H, W], aux_outputs (the earlier predictions),
            query_feature (raw output [Q, B, C] of every decoder layer).
        """
        self._check_levels(x)
        src, pos, sizes = [], [], []
        for i in range(self.num_feature_levels):
            sizes.append(x[i].shape[-2:])
            pos.append(self.pe_layer(x[i]).flatten(2).permute(2, 0, 1))
            src.append(self._project(x[i], i).permute(2, 0, 1))  # [HW, B, C]
        return self._decode(src, pos, sizes, mask_features)

    def _check_levels(self, x: List[torch.Tensor]) -> None:
        if len(x) != self.num_feature_levels:
            raise ValueError(f"Expected {self.num_feature_levels} feature levels, got {len(x)}.")

    def _project(self, feature: torch.Tensor, level: int) -> torch.Tensor:
        """[N, C_in, h, w] -> [N, hidden, h*w]: input projection plus the level embedding."""
        return self.input_proj[level](feature).flatten(2) + self.level_embed.weight[level][None, :, None]

    def _decode(self, src: List[torch.Tensor], pos: List[torch.Tensor], sizes: List, mask_features: torch.Tensor,
                keep_aux_masks: bool = True) -> Dict[str, object]:
        """The decoder layers on the flattened memory ``src``/``pos`` ([L, B, C] per level; ``sizes`` their
        (h, w)); predictions after the learnable queries and after every layer. Without ``keep_aux_masks`` the
        auxiliary predictions hold ``pred_logits`` only (their masks are freed as soon as the next layer's
        attention mask is made); in bfloat16 inference they never hold masks (see below)."""
        batch = src[0].shape[1]
        # Every prediction reads the mask features as [B, D, H*W]: one contiguous copy here instead of one per
        # prediction when they arrive channels_last (MODEL.PRECISION bf16 keeps the backbone's maps channels_last).
        mask_features = mask_features.contiguous()
        query_embed = self.query_embed.weight.unsqueeze(1).expand(-1, batch, -1)
        output = self.query_feat.weight.unsqueeze(1).expand(-1, batch, -1)

        # Inference under bfloat16 autocast (MODEL.PRECISION bf16): the attention masks between layers are made
        # from the mask features resized to each attended level (one [B, Q, h, w] product per layer instead of a
        # full-resolution [B, Q, H, W] one, then resized). Resizing and the product are both linear, so this is the
        # same map with different float rounding, well below bfloat16's; the auxiliary masks are then not made.
        # The final masks are always full resolution; float32 inference and training follow upstream exactly.
        low_res = not self.training and autocast_dtype(mask_features.device.type) == torch.bfloat16
        level_features: Dict[int, torch.Tensor] = {}

        def heads(output: torch.Tensor, level: Optional[int]):
            if not low_res or level is None:
                return self.forward_prediction_heads(output, mask_features, None if level is None else sizes[level])
            if level not in level_features:  # resized in the features' own dtype (no float32 copy of them)
                with torch.autocast(device_type=mask_features.device.type, enabled=False):
                    level_features[level] = _resize(mask_features, sizes[level])
            return self.forward_prediction_heads(output, mask_features, sizes[level], level_features[level])

        classes, masks, query_features = [], [], []
        outputs_class, outputs_mask, attn_mask = heads(output, 0)
        for i in range(self.num_layers):
            classes.append(outputs_class)
            masks.append(outputs_mask if keep_aux_masks else None)
            level = i % self.num_feature_levels
            output = self.transformer_cross_attention_layers[i](
                output, src[level], memory_mask=attn_mask, pos=pos[level], query_pos=query_embed
            )
            output = self.transformer_self_attention_layers[i](output, query_pos=query_embed)
            output = self.transformer_ffn_layers[i](output)
            last = i == self.num_layers - 1
            outputs_class, outputs_mask, attn_mask = heads(output, None if last else (i + 1) % self.num_feature_levels)
            query_features.append(output)

        aux_outputs = [{"pred_logits": c} if m is None else {"pred_logits": c, "pred_masks": m}
                       for c, m in zip(classes, masks)]
        return {
            "pred_logits": outputs_class,
            "pred_masks": outputs_mask,
            "aux_outputs": aux_outputs,
            "query_feature": query_features,
        }

    def forward_prediction_heads(self, output: torch.Tensor, mask_features: torch.Tensor, attn_mask_target_size,
                                 attn_mask_features: Optional[torch.Tensor] = None):
        """Class logits [B, Q, K+1], mask logits (see ``_mask_logits``) and the next layer's attention mask (or
        None). With ``attn_mask_features`` (the mask features already resized to ``attn_mask_target_size``) the
        attention mask comes from them and no full-resolution mask logits are made (None in their place)."""
        decoder_output = self.decoder_norm(output).transpose(0, 1)  # [B, Q, C]
        outputs_class = class_logits(decoder_output, self.class_embed, self.norm)
        mask_embed = self.mask_embed(decoder_output)
        if attn_mask_features is not None:
            attn_mask = _attn_mask_from_logits(self._mask_logits(mask_embed, attn_mask_features), self.num_heads)
            return outputs_class, None, attn_mask
        outputs_mask = self._mask_logits(mask_embed, mask_features)
        attn_mask = None
        if attn_mask_target_size is not None:
            attn_mask = _make_attn_mask(outputs_mask, attn_mask_target_size, self.num_heads)
        return outputs_class, outputs_mask, attn_mask

    @staticmethod
    def _mask_logits(mask_embed: torch.Tensor, mask_features: torch.Tensor) -> torch.Tensor:
        """mask_embed [B, Q, D] . mask_features [B, D, H, W] -> [B, Q, H, W]."""
        return torch.einsum("bqc,bchw->bqhw", mask_embed, mask_features)

"""MaskFormer's ``StandardTransformerDecoder``: a DETR decoder over one (the lowest-resolution) feature map."""

from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import nn
from torch.nn import functional as F

from ...layers import Conv2d, c2_xavier_fill
from ..registry import TRANSFORMER_DECODER_REGISTRY
from .position_encoding import PositionEmbeddingSine
from .prediction_heads import MLP, class_logits, make_class_embed
from .transformer import Transformer


@TRANSFORMER_DECODER_REGISTRY.register()
class StandardTransformerDecoder(nn.Module):
    """Learned queries decoded against one feature map by a DETR transformer; every decoder layer's output gives
    class logits and mask embeddings (deep supervision).

    Names are upstream MaskFormer's ``TransformerPredictor`` (``pe_layer``, ``transformer``, ``query_embed``,
    ``input_proj``, ``class_embed``, ``mask_embed``).

    Args:
        in_channels: channels of the feature map read (``res5`` or the pixel decoder's transformer encoder).
        mask_classification: must be True (mask classification model).
        num_classes: K (the classifier has K + 1 outputs; the last is "no object").
        hidden_dim, num_queries, nheads, dropout, dim_feedforward: transformer sizes.
        enc_layers: transformer encoder layers over the map (``ENC_LAYERS``, 0 in MaskFormer's configs).
        dec_layers: decoder layers (``DEC_LAYERS``; each makes a prediction).
        pre_norm: pre-LayerNorm layers.
        deep_supervision: predict after every decoder layer (``aux_outputs``), not only the last.
        mask_dim: channels of the mask embedding (= pixel decoder's mask_features).
        enforce_input_project: 1x1 conv on the input even when in_channels == hidden_dim.
        norm: cosine classifier (``SEM_SEG_HEAD.USE_LAYERNORM``, RankSeg): ``class_embed`` has no bias.
    """

    def __init__(self, in_channels: int, mask_classification: bool = True, *, num_classes: int, hidden_dim: int,
                 num_queries: int, nheads: int, dropout: float, dim_feedforward: int, enc_layers: int,
                 dec_layers: int, pre_norm: bool, deep_supervision: bool, mask_dim: int,
                 enforce_input_project: bool, norm: bool = False):
        super().__init__()
        if not mask_classification:
            raise ValueError("StandardTransformerDecoder only supports mask classification.")
        if dec_layers < 1:
            raise ValueError(f"StandardTransformerDecoder: dec_layers={dec_layers} (MODEL.MASK_FORMER.DEC_LAYERS) "
                             "must be >= 1.")
        self.mask_classification = mask_classification
        self.norm = norm
        self.pe_layer = PositionEmbeddingSine(hidden_dim // 2, normalize=True)
        self.transformer = Transformer(
            d_model=hidden_dim, dropout=dropout, nhead=nheads, dim_feedforward=dim_feedforward,
            num_encoder_layers=enc_layers, num_decoder_layers=dec_layers, normalize_before=pre_norm,
            return_intermediate_dec=deep_supervision,
        )
        self.num_queries = num_queries
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        if in_channels != hidden_dim or enforce_input_project:
            self.input_proj = Conv2d(in_channels, hidden_dim, kernel_size=1)
            c2_xavier_fill(self.input_proj)
        else:
            self.input_proj = nn.Sequential()
        self.aux_loss = deep_supervision
        self.class_embed = make_class_embed(hidden_dim, num_classes, norm)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)

    @classmethod
    def from_config(cls, cfg, in_channels: int, mask_classification: bool = True) -> StandardTransformerDecoder:
        mf = cfg.MODEL.MASK_FORMER
        return cls(
            in_channels,
            mask_classification,
            num_classes=cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            hidden_dim=mf.HIDDEN_DIM,
            num_queries=mf.NUM_OBJECT_QUERIES,
            nheads=mf.NHEADS,
            dropout=mf.DROPOUT,
            dim_feedforward=mf.DIM_FEEDFORWARD,
            enc_layers=mf.ENC_LAYERS,
            dec_layers=mf.DEC_LAYERS,
            pre_norm=mf.PRE_NORM,
            deep_supervision=mf.DEEP_SUPERVISION,
            mask_dim=cfg.MODEL.SEM_SEG_HEAD.MASK_DIM,
            enforce_input_project=mf.ENFORCE_INPUT_PROJ,
            norm=cfg.MODEL.SEM_SEG_HEAD.USE_LAYERNORM,
        )

    def forward(self, x: torch.Tensor, mask_features: torch.Tensor, mask: Optional[torch.Tensor] = None
                ) -> Dict[str, object]:
        """
        Args:
            x: [B, in_channels, h, w], the map the queries attend to.
            mask_features: [B, mask_dim, H, W] per-pixel embeddings.
            mask: [B, H', W'] True on padding, or None.
        Returns:
            pred_logits [B, Q, K+1], pred_masks [B, Q, H, W], aux_outputs (earlier layers' predictions, with deep
            supervision), query_feature (un-normalised output [Q, B, C] of every decoder layer).
        """
        if x.dim() != 4:
            raise ValueError(f"StandardTransformerDecoder reads one feature map [B, C, h, w]; got shape "
                             f"{tuple(x.shape)} (MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE must name one map).")
        if mask is not None:
            mask = F.interpolate(mask[None].float(), size=x.shape[-2:]).to(torch.bool)[0]
        pos = self.pe_layer(x, mask)
        hs, _, raw = self.transformer(self.input_proj(x), mask, self.query_embed.weight, pos)  # hs: [L, B, Q, C]
        outputs_class = class_logits(hs, self.class_embed, self.norm)
        outputs_mask = torch.einsum("lbqc,bchw->lbqhw", self.mask_embed(hs), mask_features)
        return {
            "pred_logits": outputs_class[-1],
            "pred_masks": outputs_mask[-1],
            "aux_outputs": [{"pred_logits": c, "pred_masks": m} for c, m in zip(outputs_class[:-1], outputs_mask[:-1])],
            "query_feature": raw,
        }

"""RankSeg's selected-label pixel classifier: per-pixel logits over the image's top-k categories only, rescaled per
rank position (upstream's ``cls_seg`` of ``ASPPRankSegHead`` and the UPerNet RankSeg heads)."""

from __future__ import annotations

import torch
from torch import nn

from ...utils.precision import Float32LayerNorm

__all__ = ["SelectedLabelClassifier"]


class SelectedLabelClassifier(nn.Module):
    """``logit[b, r, y, x] = <feat[b, :, y, x], cls_emb[topk[b, r]]> + cls_bias_emb[topk[b, r]]``, then
    ``LayerNorm(topk)`` over the rank axis (``norm``: one learnable scale and shift per rank position, the
    rank-oriented temperatures).

    Parameters are upstream's: ``cls_emb`` [1, K, C] and ``cls_bias_emb`` [1, K] (truncated normal, std 0.02), and
    ``norm``. With ``MODEL.RANKSEG.SHARE_EMBEDDING`` the multi-label head reads ``cls_emb`` as its class tokens.

    Args:
        num_classes: K. channels: C of the features. topk: k, the categories kept per image.
    """

    def __init__(self, num_classes: int, channels: int, topk: int):
        super().__init__()
        self.num_classes = num_classes
        self.topk = topk
        self.cls_emb = nn.Parameter(torch.empty(1, num_classes, channels))
        self.cls_bias_emb = nn.Parameter(torch.empty(1, num_classes))
        nn.init.trunc_normal_(self.cls_emb, std=0.02)
        nn.init.trunc_normal_(self.cls_bias_emb, std=0.02)
        self.norm = Float32LayerNorm(topk)

    @property
    def class_embedding(self) -> torch.Tensor:
        """[K, C]: the rows the multi-label head shares (``SHARE_EMBEDDING``)."""
        return self.cls_emb[0]

    def forward(self, feat: torch.Tensor, topk_index: torch.Tensor) -> torch.Tensor:
        """
        Args:
            feat: [B, C, H, W] the head's features (after its dropout).
            topk_index: [B, k] the selected categories, best first.
        Returns:
            [B, k, H, W] rank-ordered logits.
        """
        if topk_index.shape[1] != self.topk:
            raise ValueError(f"SelectedLabelClassifier was built for TOPK={self.topk}, got a selection of "
                             f"{topk_index.shape[1]} categories.")
        emb = self.cls_emb[0][topk_index]  # [B, k, C]
        bias = self.cls_bias_emb[0][topk_index]  # [B, k]
        logits = torch.einsum("bchw,bkc->bkhw", feat, emb) + bias[:, :, None, None]
        return self.norm(logits.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

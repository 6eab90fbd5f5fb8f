"""Asymmetric loss for multi-label classification (Ridnik et al., 2021), as RankSeg uses it."""

from __future__ import annotations

import torch
from torch import nn


class AsymmetricLoss(nn.Module):
    """Focal-style BCE with different focusing for positives and negatives and a probability margin.

    For logit x, target y, p = sigmoid(x):
      positives: y * log(max(p, eps)) * (1 - p) ** gamma_pos
      negatives: (1 - y) * log(max(p_m, eps)) * (1 - p_m) ** gamma_neg,  p_m = min(1 - p + clip, 1)
    and the loss is -sum / B / K.

    Args:
        gamma_neg, gamma_pos: focusing exponents. clip: margin added to 1 - p of negatives. eps: log floor.
    """

    def __init__(self, gamma_neg: float = 2, gamma_pos: float = 0, clip: float = 0.05, eps: float = 1e-5):
        super().__init__()
        self.gamma_neg = gamma_neg
        self.gamma_pos = gamma_pos
        self.clip = clip
        self.eps = eps

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """logits, targets: [B, K] (targets in {0, 1}). Returns a scalar."""
        targets = targets.to(logits.dtype)
        anti = 1 - targets
        p = torch.sigmoid(logits)
        p_neg = 1 - p
        if self.clip is not None and self.clip > 0:
            p_neg = (p_neg + self.clip).clamp(max=1)
        loss = targets * torch.log(p.clamp(min=self.eps)) + anti * torch.log(p_neg.clamp(min=self.eps))
        if self.gamma_neg > 0 or self.gamma_pos > 0:
            p_t = p * targets + p_neg * anti
            loss = loss * torch.pow(1 - p_t, self.gamma_pos * targets + self.gamma_neg * anti)
        return -loss.sum() / logits.shape[0] / logits.shape[1]

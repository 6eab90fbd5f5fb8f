"""What both transformer decoders compute from their query features: class logits and mask embeddings."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class MLP(nn.Module):
    """``num_layers`` Linear layers with ReLU between them (``layers.{i}``)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        outs = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims, outs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


def make_class_embed(hidden_dim: int, num_classes: int, cosine: bool) -> nn.Linear:
    """The query classifier ``class_embed``: K + 1 outputs ("no object" last); no bias for the cosine classifier."""
    return nn.Linear(hidden_dim, num_classes + 1, bias=not cosine)


def class_logits(queries: torch.Tensor, class_embed: nn.Linear, cosine: bool) -> torch.Tensor:
    """Class logits [..., K+1] of query features [..., C].

    With ``cosine`` (RankSeg's ``SEM_SEG_HEAD.USE_LAYERNORM``) the logits are cosine similarities between the
    normalised query feature and the normalised rows of ``class_embed``; otherwise ``class_embed(queries)``.
    """
    if not cosine:
        return class_embed(queries)
    return F.normalize(queries, dim=-1) @ F.normalize(class_embed.weight, dim=-1).t()

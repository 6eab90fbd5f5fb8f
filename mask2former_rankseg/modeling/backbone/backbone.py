"""Backbone interface: named feature maps plus their shapes."""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from typing import Dict, Mapping

import torch
from torch import nn

from ...layers import ShapeSpec


class Backbone(nn.Module, metaclass=ABCMeta):
    """Returns ``{name: [B, C, H/stride, W/stride]}``; ``output_shape()`` says C and stride per name."""

    _out_features: list
    _out_feature_channels: Dict[str, int]
    _out_feature_strides: Dict[str, int]

    @abstractmethod
    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """x: [B, C_in, H, W]."""

    @property
    def size_divisibility(self) -> int:
        """Input sizes must be a multiple of this (0: no constraint)."""
        return 0

    @property
    def padding_constraints(self) -> Dict[str, int]:
        return {}

    def adapt_state_dict(self, state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Weights of a loaded file, named relative to this backbone, in this backbone's layout. The Checkpointer
        passes every file's backbone part through this before matching names, so a backbone can take foreign
        layouts (e.g. a position embedding pretrained for another grid); the default changes nothing."""
        return dict(state)

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {
            name: ShapeSpec(channels=self._out_feature_channels[name], stride=self._out_feature_strides[name])
            for name in self._out_features
        }

"""ResNet / ResNeXt backbones with detectron2's structure and parameter names.

Names: ``stem.conv1`` (+ ``.norm``), ``res{2..5}.{i}.conv{1,2,3}`` (+ ``.norm``), ``res{k}.{i}.shortcut``.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Type

import torch
from torch import nn
from torch.nn import functional as F

from ...layers import Conv2d, FrozenBatchNorm2d, ShapeSpec, c2_msra_fill, get_norm
from ..registry import BACKBONE_REGISTRY
from .backbone import Backbone

__all__ = ["BasicStem", "BasicBlock", "BottleneckBlock", "ResNet", "build_resnet_backbone"]

DEPTH_TO_BLOCKS = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}


class _Block(nn.Module):
    """A residual block with fixed in/out channels and stride; can be frozen."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride

    def freeze(self) -> _Block:
        for p in self.parameters():
            p.requires_grad = False
        FrozenBatchNorm2d.convert_frozen_batchnorm(self)
        return self

    def _make_shortcut(self, in_channels: int, out_channels: int, stride: int, norm: str) -> Optional[Conv2d]:
        if in_channels == out_channels and stride == 1:
            return None
        return Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False,
                      norm=get_norm(norm, out_channels))


class BasicBlock(_Block):
    """Two 3x3 convs (ResNet-18/34)."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1, norm: str = "BN"):
        super().__init__(in_channels, out_channels, stride)
        self.shortcut = self._make_shortcut(in_channels, out_channels, stride, norm)
        self.conv1 = Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False,
                            norm=get_norm(norm, out_channels))
        self.conv2 = Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False,
                            norm=get_norm(norm, out_channels))
        for layer in (self.conv1, self.conv2, self.shortcut):
            if layer is not None:
                c2_msra_fill(layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu_(self.conv1(x)))
        shortcut = self.shortcut(x) if self.shortcut is not None else x
        return F.relu_(out + shortcut)


class BottleneckBlock(_Block):
    """1x1 -> 3x3 (grouped, dilated) -> 1x1 (ResNet-50+ / ResNeXt)."""

    def __init__(self, in_channels: int, out_channels: int, *, bottleneck_channels: int, stride: int = 1,
                 num_groups: int = 1, norm: str = "BN", stride_in_1x1: bool = False, dilation: int = 1):
        super().__init__(in_channels, out_channels, stride)
        self.shortcut = self._make_shortcut(in_channels, out_channels, stride, norm)
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = Conv2d(in_channels, bottleneck_channels, 1, stride=stride_1x1, bias=False,
                            norm=get_norm(norm, bottleneck_channels))
        self.conv2 = Conv2d(bottleneck_channels, bottleneck_channels, 3, stride=stride_3x3, padding=dilation,
                            bias=False, groups=num_groups, dilation=dilation,
                            norm=get_norm(norm, bottleneck_channels))
        self.conv3 = Conv2d(bottleneck_channels, out_channels, 1, bias=False, norm=get_norm(norm, out_channels))
        for layer in (self.conv1, self.conv2, self.conv3, self.shortcut):
            if layer is not None:
                c2_msra_fill(layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu_(self.conv1(x))
        out = F.relu_(self.conv2(out))
        out = self.conv3(out)
        shortcut = self.shortcut(x) if self.shortcut is not None else x
        return F.relu_(out + shortcut)


class BasicStem(nn.Module):
    """7x7 conv (stride 2) + norm + ReLU + 3x3 max-pool (stride 2): total stride 4."""

    def __init__(self, in_channels: int = 3, out_channels: int = 64, norm: str = "BN"):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = 4
        self.conv1 = Conv2d(in_channels, out_channels, 7, stride=2, padding=3, bias=False,
                            norm=get_norm(norm, out_channels))
        c2_msra_fill(self.conv1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(F.relu_(self.conv1(x)), kernel_size=3, stride=2, padding=1)

    def freeze(self) -> BasicStem:
        for p in self.parameters():
            p.requires_grad = False
        FrozenBatchNorm2d.convert_frozen_batchnorm(self)
        return self


class ResNet(Backbone):
    """Stem + stages ``res2..res5``; returns the requested ``out_features`` (``"stem"``, ``"res2"``, ...).

    Args:
        stem: the stem module (stride 4).
        stages: one list of blocks per stage, for res2, res3, ... in order.
        out_features: names of the outputs to return.
        freeze_at: 0 trains everything; 1 freezes the stem; k >= 2 also freezes res2..res{k}.
    """

    def __init__(self, stem: nn.Module, stages: Sequence[Sequence[_Block]], out_features: Sequence[str],
                 freeze_at: int = 0):
        super().__init__()
        self.stem = stem
        current_stride = stem.stride
        self._out_feature_strides = {"stem": current_stride}
        self._out_feature_channels = {"stem": stem.out_channels}
        self.stage_names: List[str] = []
        for i, blocks in enumerate(stages):
            name = f"res{i + 2}"
            self.add_module(name, nn.Sequential(*blocks))
            self.stage_names.append(name)
            current_stride *= math.prod(b.stride for b in blocks)
            self._out_feature_strides[name] = current_stride
            self._out_feature_channels[name] = blocks[-1].out_channels
        unknown = [f for f in out_features if f not in self._out_feature_channels]
        if unknown:
            raise ValueError(
                f"MODEL.RESNETS.OUT_FEATURES has {unknown}; available: {list(self._out_feature_channels)}."
            )
        self._out_features = list(out_features)
        self.freeze(freeze_at)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        if x.dim() != 4:
            raise ValueError(f"ResNet takes [B, C, H, W] inputs, got shape {tuple(x.shape)}.")
        outputs = {}
        x = self.stem(x)
        if "stem" in self._out_features:
            outputs["stem"] = x
        for name in self.stage_names:
            x = getattr(self, name)(x)
            if name in self._out_features:
                outputs[name] = x
        return outputs

    def freeze(self, freeze_at: int = 0) -> ResNet:
        """Freeze the stem (freeze_at >= 1) and stages res2..res{freeze_at} (freeze_at >= 2)."""
        if freeze_at >= 1:
            self.stem.freeze()
        for idx, name in enumerate(self.stage_names, start=2):
            if freeze_at >= idx:
                for block in getattr(self, name).children():
                    block.freeze()
        return self

    @staticmethod
    def make_stage(block_class: Type[_Block], num_blocks: int, *, in_channels: int, out_channels: int,
                   first_stride: int, **kwargs) -> List[_Block]:
        """``num_blocks`` blocks; the first has ``first_stride`` and maps in -> out channels."""
        blocks = []
        for i in range(num_blocks):
            blocks.append(block_class(in_channels, out_channels, stride=first_stride if i == 0 else 1, **kwargs))
            in_channels = out_channels
        return blocks

    @staticmethod
    def make_default_stages(depth: int, block_class: Optional[Type[_Block]] = None, *, stem_out_channels: int = 64,
                            res2_out_channels: Optional[int] = None, num_groups: int = 1, width_per_group: int = 64,
                            norm: str = "BN", stride_in_1x1: bool = False, res5_dilation: int = 1
                            ) -> List[List[_Block]]:
        """The four stages of a standard ResNet of ``depth`` (18, 34, 50, 101, 152)."""
        if depth not in DEPTH_TO_BLOCKS:
            raise ValueError(f"MODEL.RESNETS.DEPTH={depth} is not one of {sorted(DEPTH_TO_BLOCKS)}.")
        if res5_dilation not in (1, 2):
            raise ValueError(f"MODEL.RESNETS.RES5_DILATION={res5_dilation} must be 1 or 2.")
        if block_class is None:
            block_class = BasicBlock if depth in (18, 34) else BottleneckBlock
        basic = block_class is BasicBlock
        if basic and res5_dilation != 1:
            raise ValueError("MODEL.RESNETS.RES5_DILATION must be 1 for ResNet-18/34 (BasicBlock).")
        if basic and num_groups != 1:
            raise ValueError("MODEL.RESNETS.NUM_GROUPS must be 1 for ResNet-18/34 (BasicBlock).")
        out_channels = res2_out_channels or (64 if basic else 256)
        bottleneck_channels = num_groups * width_per_group
        in_channels = stem_out_channels
        stages = []
        for idx, num_blocks in enumerate(DEPTH_TO_BLOCKS[depth]):
            dilation = res5_dilation if idx == 3 else 1
            first_stride = 1 if idx == 0 or dilation == 2 else 2
            kwargs = {"norm": norm}
            if not basic:
                kwargs.update(bottleneck_channels=bottleneck_channels, num_groups=num_groups,
                              stride_in_1x1=stride_in_1x1, dilation=dilation)
            stages.append(ResNet.make_stage(block_class, num_blocks, in_channels=in_channels,
                                            out_channels=out_channels, first_stride=first_stride, **kwargs))
            in_channels = out_channels
            out_channels *= 2
            bottleneck_channels *= 2
        return stages


@BACKBONE_REGISTRY.register()
def build_resnet_backbone(cfg, input_shape: ShapeSpec) -> ResNet:
    """ResNet from ``cfg.MODEL.RESNETS`` and ``cfg.MODEL.BACKBONE.FREEZE_AT``."""
    r = cfg.MODEL.RESNETS
    if any(r.DEFORM_ON_PER_STAGE):
        raise ValueError(
            "MODEL.RESNETS.DEFORM_ON_PER_STAGE: deformable convolutions are not supported; set all to False."
        )
    stem = BasicStem(in_channels=input_shape.channels, out_channels=r.STEM_OUT_CHANNELS, norm=r.NORM)
    res2_out_channels = r.RES2_OUT_CHANNELS
    if r.DEPTH in (18, 34) and res2_out_channels == 256:
        # detectron2 requires 64 for R18/34 while its default is 256 (sized for R50+): read the
        # untouched default as the standard R18/34 width; any other value builds a narrower/wider net.
        res2_out_channels = 64
    stages = ResNet.make_default_stages(
        r.DEPTH, stem_out_channels=r.STEM_OUT_CHANNELS, res2_out_channels=res2_out_channels,
        num_groups=r.NUM_GROUPS, width_per_group=r.WIDTH_PER_GROUP, norm=r.NORM,
        stride_in_1x1=r.STRIDE_IN_1X1, res5_dilation=r.RES5_DILATION,
    )
    # Only build the stages that some requested output needs.
    last = max(int(f[3:]) if f.startswith("res") else 1 for f in r.OUT_FEATURES)
    stages = stages[: max(last - 1, 0)]
    return ResNet(stem, stages, out_features=r.OUT_FEATURES, freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT)

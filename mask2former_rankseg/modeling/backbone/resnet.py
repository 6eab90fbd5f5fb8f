"""ResNet / ResNeXt backbones with detectron2's structure and parameter names.

Names: ``stem.conv1`` (+ ``.norm``; the deep stem also ``stem.conv2``, ``stem.conv3``), ``res{2..5}.{i}.conv{1,2,3}``
(+ ``.norm``), ``res{k}.{i}.shortcut``. Two builders: ``build_resnet_backbone`` (detectron2's) and
``build_resnet_deeplab_backbone`` (detectron2 DeepLab's: deep stem, dilated res4/res5, multi-grid).
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

__all__ = ["BasicStem", "BasicBlock", "BottleneckBlock", "DeepLabStem", "ResNet", "build_resnet_backbone",
           "build_resnet_deeplab_backbone", "deeplab_block_dilations"]

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
    """Two 3x3 convs (ResNet-18/34).

    ``dilation`` dilates the first conv only, as mmseg's ``BasicBlock`` does (torchvision and detectron2 have no
    dilated BasicBlock), so that mmseg's dilated ResNet-18/34 weights behave the same here.
    """

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1, norm: str = "BN",
                 dilation: int = 1):
        super().__init__(in_channels, out_channels, stride)
        self.shortcut = self._make_shortcut(in_channels, out_channels, stride, norm)
        self.conv1 = Conv2d(in_channels, out_channels, 3, stride=stride, padding=dilation, dilation=dilation,
                            bias=False, norm=get_norm(norm, out_channels))
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


class _Stem(nn.Module):
    """The layers before res2: [B, in_channels, H, W] -> [B, out_channels, H/4, W/4]; can be frozen."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = 4

    def freeze(self) -> _Stem:
        for p in self.parameters():
            p.requires_grad = False
        FrozenBatchNorm2d.convert_frozen_batchnorm(self)
        return self


class BasicStem(_Stem):
    """7x7 conv (stride 2) + norm + ReLU + 3x3 max-pool (stride 2): total stride 4."""

    def __init__(self, in_channels: int = 3, out_channels: int = 64, norm: str = "BN"):
        super().__init__(in_channels, out_channels)
        self.conv1 = Conv2d(in_channels, out_channels, 7, stride=2, padding=3, bias=False,
                            norm=get_norm(norm, out_channels))
        c2_msra_fill(self.conv1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(F.relu_(self.conv1(x)), kernel_size=3, stride=2, padding=1)


class DeepLabStem(_Stem):
    """The deep ("V1c") stem: three 3x3 convs, in -> out/2 (stride 2) -> out/2 -> out, each + norm + ReLU, then a
    3x3 max-pool (stride 2): total stride 4.

    detectron2 DeepLab's ``DeepLabStem`` (names ``stem.conv{1,2,3}`` + ``.norm``, as in its ``R-103.pkl``) and
    mmseg's ResNetV1c ``deep_stem`` (``stem_channels`` = ``out_channels``).
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 128, norm: str = "BN"):
        super().__init__(in_channels, out_channels)
        if out_channels % 2:
            raise ValueError(f"MODEL.RESNETS.STEM_OUT_CHANNELS={out_channels} must be even for the deeplab stem "
                             "(its first two convs have half as many channels).")
        mid = out_channels // 2
        self.conv1 = Conv2d(in_channels, mid, 3, stride=2, padding=1, bias=False, norm=get_norm(norm, mid))
        self.conv2 = Conv2d(mid, mid, 3, stride=1, padding=1, bias=False, norm=get_norm(norm, mid))
        self.conv3 = Conv2d(mid, out_channels, 3, stride=1, padding=1, bias=False,
                            norm=get_norm(norm, out_channels))
        for layer in (self.conv1, self.conv2, self.conv3):
            c2_msra_fill(layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu_(self.conv1(x))
        x = F.relu_(self.conv2(x))
        x = F.relu_(self.conv3(x))
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


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
                   first_stride: int, dilation_per_block: Optional[Sequence[int]] = None, **kwargs) -> List[_Block]:
        """``num_blocks`` blocks; the first has ``first_stride`` and maps in -> out channels; block i has
        ``dilation_per_block[i]`` if given."""
        if dilation_per_block is not None and len(dilation_per_block) != num_blocks:
            raise ValueError(f"dilation_per_block has {len(dilation_per_block)} values for {num_blocks} blocks.")
        blocks = []
        for i in range(num_blocks):
            if dilation_per_block is not None:
                kwargs["dilation"] = dilation_per_block[i]
            blocks.append(block_class(in_channels, out_channels, stride=first_stride if i == 0 else 1, **kwargs))
            in_channels = out_channels
        return blocks

    @staticmethod
    def make_default_stages(depth: int, block_class: Optional[Type[_Block]] = None, *, stem_out_channels: int = 64,
                            res2_out_channels: Optional[int] = None, num_groups: int = 1, width_per_group: int = 64,
                            norm: str = "BN", stride_in_1x1: bool = False, res5_dilation: int = 1
                            ) -> List[List[_Block]]:
        """The four stages of a standard ResNet of ``depth`` (18, 34, 50, 101, 152), res5 dilated by 1 or 2
        (detectron2's ``build_resnet_backbone``)."""
        if res5_dilation not in (1, 2):
            raise ValueError(f"MODEL.RESNETS.RES5_DILATION={res5_dilation} must be 1 or 2.")
        if (block_class is BasicBlock or (block_class is None and depth in (18, 34))) and res5_dilation != 1:
            raise ValueError("MODEL.RESNETS.RES5_DILATION must be 1 for ResNet-18/34 (BasicBlock).")
        return ResNet.make_stages(
            depth, block_class, stem_out_channels=stem_out_channels, res2_out_channels=res2_out_channels,
            num_groups=num_groups, width_per_group=width_per_group, norm=norm, stride_in_1x1=stride_in_1x1,
            stage_dilations=(1, 1, 1, res5_dilation),
        )

    @staticmethod
    def make_stages(depth: int, block_class: Optional[Type[_Block]] = None, *, stem_out_channels: int = 64,
                    res2_out_channels: Optional[int] = None, num_groups: int = 1, width_per_group: int = 64,
                    norm: str = "BN", stride_in_1x1: bool = False, stage_dilations: Sequence[int] = (1, 1, 1, 1),
                    block_dilations: Optional[Sequence[Sequence[int]]] = None) -> List[List[_Block]]:
        """The four stages res2..res5 of a ResNet of ``depth`` (18, 34, 50, 101, 152).

        Args:
            stage_dilations: one per stage; a stage with dilation > 1 has stride 1 (it keeps its input's
                resolution), the others (but res2) stride 2.
            block_dilations: per stage, the dilation of each of its blocks (multi-grid, contraction); by default
                every block has its stage's dilation.
        """
        if depth not in DEPTH_TO_BLOCKS:
            raise ValueError(f"MODEL.RESNETS.DEPTH={depth} is not one of {sorted(DEPTH_TO_BLOCKS)}.")
        blocks_per_stage = DEPTH_TO_BLOCKS[depth]
        if block_dilations is None:
            block_dilations = [[d] * n for d, n in zip(stage_dilations, blocks_per_stage)]
        if [len(d) for d in block_dilations] != blocks_per_stage:
            raise ValueError(f"block_dilations has {[len(d) for d in block_dilations]} entries per stage; "
                             f"ResNet-{depth} has {blocks_per_stage} blocks.")
        if block_class is None:
            block_class = BasicBlock if depth in (18, 34) else BottleneckBlock
        basic = block_class is BasicBlock
        if basic and num_groups != 1:
            raise ValueError("MODEL.RESNETS.NUM_GROUPS must be 1 for ResNet-18/34 (BasicBlock).")
        out_channels = res2_out_channels or (64 if basic else 256)
        bottleneck_channels = num_groups * width_per_group
        in_channels = stem_out_channels
        stages = []
        for idx, (stage_dilation, dilations) in enumerate(zip(stage_dilations, block_dilations)):
            first_stride = 1 if idx == 0 or stage_dilation > 1 else 2
            kwargs = {"norm": norm}
            if not basic:
                kwargs.update(bottleneck_channels=bottleneck_channels, num_groups=num_groups,
                              stride_in_1x1=stride_in_1x1)
            stages.append(ResNet.make_stage(block_class, len(dilations), in_channels=in_channels,
                                            out_channels=out_channels, first_stride=first_stride,
                                            dilation_per_block=dilations, **kwargs))
            in_channels = out_channels
            out_channels *= 2
            bottleneck_channels *= 2
        return stages


def deeplab_block_dilations(blocks_per_stage: Sequence[int], *, res4_dilation: int = 1, res5_dilation: int = 1,
                            res5_multi_grid: Sequence[int] = (1, 1, 1), contract_dilation: bool = False
                            ) -> List[List[int]]:
    """The dilation of every block of res2..res5 in ``build_resnet_deeplab_backbone``.

    Stage dilations are (1, 1, ``res4_dilation``, ``res5_dilation``); res5's block i has ``res5_dilation *
    res5_multi_grid[i]`` (detectron2 DeepLab's multi-grid). ``contract_dilation`` (mmseg's): the first block of
    every stage with dilation d > 1 has d // 2; mmseg applies it only to a stage without multi-grid, so it needs
    ``res5_multi_grid`` all ones. E.g. ResNet-50, (2, 4), multi-grid [1, 1, 1], contracted: res4 [1, 2, 2, 2, 2, 2],
    res5 [2, 4, 4].
    """
    if len(res5_multi_grid) != blocks_per_stage[3]:
        raise ValueError(f"MODEL.RESNETS.RES5_MULTI_GRID={list(res5_multi_grid)} needs one value per res5 block "
                         f"({blocks_per_stage[3]}); e.g. {[1] * blocks_per_stage[3]} for no multi-grid.")
    if any(not isinstance(m, int) or m < 1 for m in res5_multi_grid):
        raise ValueError(f"MODEL.RESNETS.RES5_MULTI_GRID={list(res5_multi_grid)} must hold positive integers.")
    if contract_dilation and any(m != 1 for m in res5_multi_grid):
        raise ValueError(
            f"MODEL.RESNETS.CONTRACT_DILATION=True needs MODEL.RESNETS.RES5_MULTI_GRID all ones (got "
            f"{list(res5_multi_grid)}): mmseg contracts only stages without multi-grid. Set RES5_MULTI_GRID to "
            f"{[1] * blocks_per_stage[3]} (mmseg's ResNetV1c-D8) or CONTRACT_DILATION to False."
        )
    stage_dilations = (1, 1, res4_dilation, res5_dilation)
    dilations = [[d] * n for d, n in zip(stage_dilations, blocks_per_stage)]
    dilations[3] = [res5_dilation * m for m in res5_multi_grid]
    if contract_dilation:
        for stage, d in zip(dilations, stage_dilations):
            if d > 1:
                stage[0] = d // 2
    return dilations


def _res2_out_channels(r) -> int:
    """``RES2_OUT_CHANNELS``, reading the untouched default (256, sized for R50+) as 64 for R18/34."""
    if r.DEPTH in (18, 34) and r.RES2_OUT_CHANNELS == 256:
        # detectron2 requires 64 for R18/34 while its default is 256 (sized for R50+): read the
        # untouched default as the standard R18/34 width; any other value builds a narrower/wider net.
        return 64
    return r.RES2_OUT_CHANNELS


def _check_no_deform(r) -> None:
    if any(r.DEFORM_ON_PER_STAGE):
        raise ValueError(
            "MODEL.RESNETS.DEFORM_ON_PER_STAGE: deformable convolutions are not supported; set all to False."
        )


def _num_stages_needed(out_features: Sequence[str]) -> int:
    """How many of res2..res5 some requested output needs (so no parameter goes without a gradient)."""
    last = max(int(f[3:]) if f.startswith("res") else 1 for f in out_features)
    return max(last - 1, 0)


@BACKBONE_REGISTRY.register()
def build_resnet_backbone(cfg, input_shape: ShapeSpec) -> ResNet:
    """ResNet from ``cfg.MODEL.RESNETS`` and ``cfg.MODEL.BACKBONE.FREEZE_AT``."""
    r = cfg.MODEL.RESNETS
    _check_no_deform(r)
    stem = BasicStem(in_channels=input_shape.channels, out_channels=r.STEM_OUT_CHANNELS, norm=r.NORM)
    stages = ResNet.make_default_stages(
        r.DEPTH, stem_out_channels=r.STEM_OUT_CHANNELS, res2_out_channels=_res2_out_channels(r),
        num_groups=r.NUM_GROUPS, width_per_group=r.WIDTH_PER_GROUP, norm=r.NORM,
        stride_in_1x1=r.STRIDE_IN_1X1, res5_dilation=r.RES5_DILATION,
    )
    stages = stages[: _num_stages_needed(r.OUT_FEATURES)]
    return ResNet(stem, stages, out_features=r.OUT_FEATURES, freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT)


STEMS = {"basic": BasicStem, "deeplab": DeepLabStem}


@BACKBONE_REGISTRY.register()
def build_resnet_deeplab_backbone(cfg, input_shape: ShapeSpec) -> ResNet:
    """detectron2 DeepLab's dilated ResNet from ``cfg.MODEL.RESNETS`` (any depth, ResNet-18/34 included).

    Keys beyond ``build_resnet_backbone``'s: ``STEM_TYPE`` ("basic": 7x7 stem; "deeplab": :class:`DeepLabStem`),
    ``RES4_DILATION`` (1 or 2), ``RES5_DILATION`` (1, 2 or 4; 4 if res4 is dilated), ``RES5_MULTI_GRID`` (res5's
    per-block dilation multipliers) and the package's ``CONTRACT_DILATION`` (mmseg's ``contract_dilation``);
    per-block dilations: :func:`deeplab_block_dilations`. A dilated stage has stride 1: output stride 16 with
    res5 dilated, 8 with res4 and res5 dilated.

    - detectron2's R-103 (its DeepLab configs, weights ``R-103.pkl``): ``DEPTH: 101, STEM_TYPE: "deeplab",
      STEM_OUT_CHANNELS: 128, STRIDE_IN_1X1: False, RES5_DILATION: 2, RES5_MULTI_GRID: [1, 2, 4], NORM: "SyncBN"``
      (output stride 16; res5 dilations 2, 4, 8).
    - mmseg's ResNetV1c-D8 (RankSeg's per-pixel configs: ``dilations=(1, 1, 2, 4)``, ``strides=(1, 2, 1, 1)``,
      ``contract_dilation=True``, ``style='pytorch'``, stem_channels 64): ``STEM_TYPE: "deeplab",
      STEM_OUT_CHANNELS: 64, STRIDE_IN_1X1: False, RES4_DILATION: 2, RES5_DILATION: 4, RES5_MULTI_GRID: [1, 1, 1],
      CONTRACT_DILATION: True, NORM: "SyncBN"`` (output stride 8; weights: ``tools/convert-mmseg-resnet-to-d2.py``).
    """
    r = cfg.MODEL.RESNETS
    _check_no_deform(r)
    if r.STEM_TYPE not in STEMS:
        raise ValueError(f"MODEL.RESNETS.STEM_TYPE={r.STEM_TYPE!r} is not one of {sorted(STEMS)}.")
    if r.RES4_DILATION not in (1, 2):
        raise ValueError(f"MODEL.RESNETS.RES4_DILATION={r.RES4_DILATION} must be 1 or 2.")
    if r.RES5_DILATION not in (1, 2, 4):
        raise ValueError(f"MODEL.RESNETS.RES5_DILATION={r.RES5_DILATION} must be 1, 2 or 4.")
    if r.RES4_DILATION == 2 and r.RES5_DILATION != 4:
        raise ValueError(f"MODEL.RESNETS.RES4_DILATION=2 needs MODEL.RESNETS.RES5_DILATION=4 (got "
                         f"{r.RES5_DILATION}): res5 follows a dilated res4 at output stride 8.")
    if r.DEPTH not in DEPTH_TO_BLOCKS:
        raise ValueError(f"MODEL.RESNETS.DEPTH={r.DEPTH} is not one of {sorted(DEPTH_TO_BLOCKS)}.")
    num_stages = _num_stages_needed(r.OUT_FEATURES)
    blocks_per_stage = DEPTH_TO_BLOCKS[r.DEPTH]
    # res5's multi-grid is checked only when res5 is built (a res4-only R18 keeps the 3-value default)
    multi_grid = r.RES5_MULTI_GRID if num_stages == 4 else [1] * blocks_per_stage[3]
    dilations = deeplab_block_dilations(
        blocks_per_stage, res4_dilation=r.RES4_DILATION, res5_dilation=r.RES5_DILATION,
        res5_multi_grid=multi_grid, contract_dilation=r.CONTRACT_DILATION,
    )
    stem = STEMS[r.STEM_TYPE](in_channels=input_shape.channels, out_channels=r.STEM_OUT_CHANNELS, norm=r.NORM)
    stages = ResNet.make_stages(
        r.DEPTH, stem_out_channels=r.STEM_OUT_CHANNELS, res2_out_channels=_res2_out_channels(r),
        num_groups=r.NUM_GROUPS, width_per_group=r.WIDTH_PER_GROUP, norm=r.NORM, stride_in_1x1=r.STRIDE_IN_1X1,
        stage_dilations=(1, 1, r.RES4_DILATION, r.RES5_DILATION), block_dilations=dilations,
    )
    return ResNet(stem, stages[:num_stages], out_features=r.OUT_FEATURES, freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT)

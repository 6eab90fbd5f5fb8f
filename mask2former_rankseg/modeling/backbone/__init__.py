"""Backbones (importing registers them in ``BACKBONE_REGISTRY``)."""

from .backbone import Backbone
from .resnet import (
    BasicBlock,
    BasicStem,
    BottleneckBlock,
    DeepLabStem,
    ResNet,
    build_resnet_backbone,
    build_resnet_deeplab_backbone,
    deeplab_block_dilations,
)
from .swin import D2SwinTransformer, build_swin_backbone

__all__ = ["Backbone", "BasicBlock", "BasicStem", "BottleneckBlock", "D2SwinTransformer", "DeepLabStem", "ResNet",
           "build_resnet_backbone", "build_resnet_deeplab_backbone", "build_swin_backbone", "deeplab_block_dilations"]

"""Backbones (importing registers them in ``BACKBONE_REGISTRY``)."""

from .backbone import Backbone
from .resnet import BasicBlock, BasicStem, BottleneckBlock, ResNet, build_resnet_backbone
from .swin import D2SwinTransformer, build_swin_backbone

__all__ = ["Backbone", "BasicBlock", "BasicStem", "BottleneckBlock", "D2SwinTransformer", "ResNet",
           "build_resnet_backbone", "build_swin_backbone"]

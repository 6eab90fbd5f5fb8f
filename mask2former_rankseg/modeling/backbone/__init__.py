"""Backbones (importing registers them in ``BACKBONE_REGISTRY``)."""

from .backbone import Backbone
from .resnet import BasicBlock, BasicStem, BottleneckBlock, ResNet, build_resnet_backbone

__all__ = ["Backbone", "BasicBlock", "BasicStem", "BottleneckBlock", "ResNet", "build_resnet_backbone"]

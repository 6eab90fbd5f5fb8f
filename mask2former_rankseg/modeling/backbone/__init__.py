"""Backbones (importing registers them in ``BACKBONE_REGISTRY``)."""

from .backbone import Backbone
from .beit import BEiT, build_beit_backbone
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
from .vit import ViT, build_vit_backbone, load_jax_npz

__all__ = ["BEiT", "Backbone", "BasicBlock", "BasicStem", "BottleneckBlock", "D2SwinTransformer", "DeepLabStem",
           "ResNet", "ViT", "build_beit_backbone", "build_resnet_backbone", "build_resnet_deeplab_backbone",
           "build_swin_backbone", "build_vit_backbone", "deeplab_block_dilations", "load_jax_npz"]

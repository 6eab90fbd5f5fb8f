"""Per-pixel heads (importing registers them): DeepLabV3's ASPP head, UPerNet's head, Segmenter's mask transformer
head, the FCN auxiliary head, and the pixel classifiers they end with (RankSeg's selected-label classifier with
``MODEL.RANKSEG.FLAG``)."""

from .aspp import DeepLabV3Head
from .common import ConvNormReLU, LinearPixelClassifier, build_pixel_classifier
from .fcn import FCNHead, build_aux_head
from .segmenter import MaskTransformerHead
from .uper import PPM, UPerHead

__all__ = ["PPM", "ConvNormReLU", "DeepLabV3Head", "FCNHead", "LinearPixelClassifier", "MaskTransformerHead",
           "UPerHead", "build_aux_head", "build_pixel_classifier"]

"""RankSeg on Mask2Former / MaskFormer and per-pixel segmenters, without detectron2."""

__version__ = "0.1.0"

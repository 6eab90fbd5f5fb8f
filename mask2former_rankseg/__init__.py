"""RankSeg (image category ranking for segmentation) on Mask2Former and MaskFormer (images and videos) and on the
per-pixel DeepLabV3, on current PyTorch without detectron2. ARCHITECTURE.md in the repository maps the package."""

__version__ = "0.1.0"

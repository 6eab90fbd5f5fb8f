"""The model zoo's catalog: upstream RankSeg's released checkpoints (its ``mask2former/MODEL_ZOO.md``: RankSeg
``.pth`` release files and the Mask2Former ``.pkl`` baselines they are compared with) and the ImageNet backbones
their configs start from, each with its shipped config, URL, the metric upstream reports and, where the file name
carries one, its md5 prefix. ``MODEL.WEIGHTS: zoo://NAME`` is resolved here to the URL (downloaded once into
iopath's cache by :func:`~.urls.local_checkpoint_path`)."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from typing import Dict, Optional

__all__ = ["ZOO", "ZOO_PREFIX", "ZooEntry", "check_md5_prefix", "zoo_entry"]

ZOO_PREFIX = "zoo://"

_M2F = "https://dl.fbaipublicfiles.com/maskformer/mask2former/"
_VM2F = "https://dl.fbaipublicfiles.com/maskformer/video_mask2former/"
_RANKSEG = "https://github.com/openseg-group/RankSeg/releases/download/v1.0.0/"
_D2 = "https://dl.fbaipublicfiles.com/detectron2/"


@dataclass(frozen=True)
class ZooEntry:
    """One checkpoint: ``config`` (a shipped config's name, or None for ImageNet backbones), ``url``, ``metric``
    (upstream's reported number, as text) and ``md5_prefix`` (the hash prefix in the file name, or None)."""

    name: str
    config: Optional[str]
    url: str
    metric: str
    md5_prefix: Optional[str] = None


def _entries() -> Dict[str, ZooEntry]:
    rows = [
        # ADE20K panoptic (Swin-L, 200 queries)
        ("ade20k/panoptic/maskformer2_swin_large_IN21k_384_bs16_160k",
         "ade20k/panoptic-segmentation/swin/maskformer2_swin_large_IN21k_384_bs16_160k.yaml",
         _M2F + "ade20k/panoptic/maskformer2_swin_large_IN21k_384_bs16_160k/model_final_e0c58e.pkl",
         "PQ 48.1, AP 34.2, mIoU 54.5"),
        ("ade20k/panoptic/maskformer2_swin_large_IN21k_384_bs16_160k-rankseg",
         "ade20k/panoptic-segmentation/swin/maskformer2_swin_large_IN21k_384_bs16_160k-rankseg.yaml",
         _RANKSEG + "ade20k_pan_maskformer2_swin_large_IN21k_384_bs16_160k-rankseg.pth", "PQ 48.9, mIoU 56.2"),
        # ADE20K semantic
        ("ade20k/semantic/maskformer2_swin_base_IN21k_384_bs16_160k_res640",
         "ade20k/semantic-segmentation/swin/maskformer2_swin_base_IN21k_384_bs16_160k_res640.yaml",
         _M2F + "ade20k/semantic/maskformer2_swin_base_IN21k_384_bs16_160k_res640/model_final_7e47bf.pkl",
         "mIoU 53.9, ms+flip 55.1"),
        ("ade20k/semantic/maskformer2_swin_base_IN21k_384_bs16_160k_res640-rankseg",
         "ade20k/semantic-segmentation/swin/maskformer2_swin_base_IN21k_384_bs16_160k_res640-rankseg.yaml",
         _RANKSEG + "ade20k_maskformer2_swin_base_IN21k_384_bs16_160k_res640-rankseg.pth", "mIoU 54.9, ms+flip 55.6"),
        ("ade20k/semantic/maskformer2_swin_base_IN21k_384_bs16_160k_res640-gt",
         "ade20k/semantic-segmentation/swin/maskformer2_swin_base_IN21k_384_bs16_160k_res640-gt.yaml",
         _RANKSEG + "ade20k_maskformer2_swin_base_IN21k_384_bs16_160k_res640-gt.pth", "mIoU 68.0 (oracle)"),
        ("ade20k/semantic/maskformer2_swin_large_IN21k_384_bs16_160k_res640",
         "ade20k/semantic-segmentation/swin/maskformer2_swin_large_IN21k_384_bs16_160k_res640.yaml",
         _M2F + "ade20k/semantic/maskformer2_swin_large_IN21k_384_bs16_160k_res640/model_final_6b4a3a.pkl",
         "mIoU 56.1, ms+flip 57.3"),
        ("ade20k/semantic/maskformer2_swin_large_IN21k_384_bs16_160k_res640-rankseg",
         "ade20k/semantic-segmentation/swin/maskformer2_swin_large_IN21k_384_bs16_160k_res640-rankseg.yaml",
         _RANKSEG + "ade20k_maskformer2_swin_large_IN21k_384_bs16_160k_res640-rankseg.pth", "mIoU 56.5, ms+flip 58.0"),
        # YouTube-VIS 2019
        ("youtubevis_2019/video_maskformer2_R101_bs16_8ep", "youtubevis_2019/video_maskformer2_R101_bs16_8ep.yaml",
         _VM2F + "ytvis_2019/video_maskformer2_R101_bs16_8ep/model_final_a34dca.pkl", "AP 49.2"),
        ("youtubevis_2019/video_maskformer2_R101_bs16_8ep-rankseg",
         "youtubevis_2019/video_maskformer2_R101_bs16_8ep-rankseg.yaml",
         _RANKSEG + "ytvis2019_video_maskformer2_R101_bs16_8ep-rankseg.pth", "AP 50.5"),
        ("youtubevis_2019/video_maskformer2_swin_base_IN21k_384_bs16_8ep",
         "youtubevis_2019/swin/video_maskformer2_swin_base_IN21k_384_bs16_8ep.yaml",
         _VM2F + "ytvis_2019/video_maskformer2_swin_base_IN21k_384_bs16_8ep/model_final_221a8a.pkl", "AP 59.5"),
        # upstream's release file of this row has no "-rankseg" in its name
        ("youtubevis_2019/video_maskformer2_swin_base_IN21k_384_bs16_8ep-rankseg",
         "youtubevis_2019/swin/video_maskformer2_swin_base_IN21k_384_bs16_8ep-rankseg.yaml",
         _RANKSEG + "ytvis2019_video_maskformer2_swin_base_IN21k_384_bs16_8ep.pth", "AP 60.3"),
        ("youtubevis_2019/video_maskformer2_swin_large_IN21k_384_bs16_8ep",
         "youtubevis_2019/swin/video_maskformer2_swin_large_IN21k_384_bs16_8ep.yaml",
         _VM2F + "ytvis_2019/video_maskformer2_swin_large_IN21k_384_bs16_8ep/model_final_c5c739.pkl", "AP 60.4 (60.7)"),
        ("youtubevis_2019/video_maskformer2_swin_large_IN21k_384_bs16_8ep-rankseg",
         "youtubevis_2019/swin/video_maskformer2_swin_large_IN21k_384_bs16_8ep-rankseg.yaml",
         _RANKSEG + "ytvis2019_video_maskformer2_swin_large_IN21k_384_bs16_8ep-rankseg.pth", "AP 61.1 (61.4)"),
        # VSPW
        ("vspw/video_maskformer2_R101_bs16_8ep", "vspw/video_maskformer2_R101_bs16_8ep.yaml",
         _RANKSEG + "vspw_video_maskformer2_R101_bs16_8ep.pth", "mIoU 45.9"),
        ("vspw/video_maskformer2_R101_bs16_8ep-rankseg", "vspw/video_maskformer2_R101_bs16_8ep-rankseg.yaml",
         _RANKSEG + "vspw_video_maskformer2_R101_bs16_8ep-rankseg.pth", "mIoU 47.0"),
        ("vspw/video_maskformer2_R101_bs16_8ep-gt", "vspw/video_maskformer2_R101_bs16_8ep-gt.yaml",
         _RANKSEG + "vspw_video_maskformer2_R101_bs16_8ep-gt.pth", "mIoU 62.3 (oracle)"),
        # ImageNet backbones the configs start from (detectron2's converted files)
        ("imagenet/R-50", None, _D2 + "ImageNetPretrained/torchvision/R-50.pkl", "torchvision ResNet-50"),
        ("imagenet/R-101", None, _D2 + "ImageNetPretrained/torchvision/R-101.pkl", "torchvision ResNet-101"),
        ("imagenet/R-103", None, _D2 + "DeepLab/R-103.pkl", "ResNet-101 with the 3x3 deep stem (ResNet101c)"),
    ]
    entries = {}
    for name, config, url, metric in rows:
        md5 = re.search(r"model_final_([0-9a-f]{6})\.pkl$", url)
        entries[name] = ZooEntry(name, config, url, metric, md5.group(1) if md5 else None)
    return entries


ZOO: Dict[str, ZooEntry] = _entries()
"""Every zoo entry by name (``<dataset>/<task>/<config stem>`` or ``imagenet/<backbone>``)."""


def zoo_entry(name: str) -> ZooEntry:
    """The entry of ``name`` (with or without ``zoo://``).

    Raises:
        KeyError: an unknown name, with the list of known ones.
    """
    key = name[len(ZOO_PREFIX):] if name.startswith(ZOO_PREFIX) else name
    if key not in ZOO:
        raise KeyError(f"{name!r} is not in the model zoo; known names: {', '.join(sorted(ZOO))}.")
    return ZOO[key]


def check_md5_prefix(path: str, prefix: Optional[str]) -> bool:
    """Whether the md5 of the file at ``path`` starts with ``prefix`` (True when no prefix is known). A passed check
    leaves ``<path>.md5-<prefix>`` beside the file, so a cached checkpoint is hashed once, not at every load."""
    if not prefix:
        return True
    marker = f"{path}.md5-{prefix}"
    if os.path.isfile(marker) and os.path.getmtime(marker) >= os.path.getmtime(path):
        return True
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if not digest.hexdigest().startswith(prefix):
        return False
    with open(marker, "w", encoding="utf-8"):
        pass
    return True

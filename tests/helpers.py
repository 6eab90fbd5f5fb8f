"""What many tests share: repository paths, the one tiny-model definition, tiny synthetic datasets, and loading
the repository's scripts as modules.

Not a test module: spawned processes and ``train_net.py`` subprocesses import it too (tests/ is on their path).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import List, Sequence, Tuple

import torch
from torch import nn

from mask2former_rankseg.config import CfgNode, get_cfg
from mask2former_rankseg.data.synthetic import generate_panoptic_dataset, generate_semantic_dataset
from mask2former_rankseg.modeling import build_model

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SYNTHETIC_CONFIG = CONFIGS / "synthetic" / "maskformer2_R18_synthetic.yaml"
SYNTHETIC_RANKSEG_CONFIG = CONFIGS / "synthetic" / "maskformer2_R18_synthetic-rankseg.yaml"
SYNTHETIC_DEEPLAB_CONFIG = CONFIGS / "synthetic" / "deeplabv3_R18_synthetic.yaml"
SYNTHETIC_DEEPLAB_RANKSEG_CONFIG = CONFIGS / "synthetic" / "deeplabv3_R18_synthetic-rankseg.yaml"
SYNTHETIC_SEGMENTER_CONFIG = CONFIGS / "synthetic" / "segmenter_vit-tiny_p8_synthetic.yaml"
SYNTHETIC_SEGMENTER_RANKSEG_CONFIG = CONFIGS / "synthetic" / "segmenter_vit-tiny_p8_synthetic-rankseg.yaml"
IMAGE_SIZE = 64

TINY_MODEL: List[str] = [
    "MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "",
    "MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.STEM_OUT_CHANNELS", "16", "MODEL.RESNETS.RES2_OUT_CHANNELS", "16",
    "MODEL.SWIN.EMBED_DIM", "16", "MODEL.SWIN.DEPTHS", "[1, 1, 1, 1]", "MODEL.SWIN.NUM_HEADS", "[1, 1, 2, 2]",
    "MODEL.SWIN.WINDOW_SIZE", "4",
    "MODEL.SEM_SEG_HEAD.CONVS_DIM", "32", "MODEL.SEM_SEG_HEAD.MASK_DIM", "32",
    "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS", "1",
    "MODEL.MASK_FORMER.HIDDEN_DIM", "32", "MODEL.MASK_FORMER.NHEADS", "2", "MODEL.MASK_FORMER.DIM_FEEDFORWARD", "64",
    "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", "8", "MODEL.MASK_FORMER.DEC_LAYERS", "4",
    "MODEL.MASK_FORMER.TRAIN_NUM_POINTS", "64",
    "MODEL.RANKSEG.HIDDEN_DIM", "32",
    "MODEL.SEM_SEG_HEAD.ASPP_CHANNELS", "32", "MODEL.AUX_HEAD.CONVS_DIM", "16", "MODEL.RANKSEG.POOL_SIZE", "4",
]
"""The one tiny model: overrides that shrink any config of the repository (image or video; ResNet or Swin;
Mask2Former, MaskFormer or the per-pixel DeepLabV3) to a toy of about 1M parameters or less on the CPU (a training
step on 64 px images takes about 0.1 s), randomly initialised (no MODEL.WEIGHTS). The label set stays the config's."""

TINY_LABELS: List[str] = ["MODEL.SEM_SEG_HEAD.NUM_CLASSES", "12", "MODEL.RANKSEG.TOPK", "5"]
"""A 12-category label set (TOPK 5), for tiny models that see no dataset."""

TINY_INPUT: List[str] = [
    "INPUT.MIN_SIZE_TRAIN", f"({IMAGE_SIZE},)", "INPUT.CROP.SIZE", f"({IMAGE_SIZE},{IMAGE_SIZE})",
    "INPUT.MIN_SIZE_TEST", str(IMAGE_SIZE), "INPUT.SIZE_DIVISIBILITY", str(IMAGE_SIZE),
    "DATALOADER.NUM_WORKERS", "0",
]
"""``IMAGE_SIZE`` px images for training and testing, no loader worker processes."""

TINY_MASK2FORMER: List[str] = [*TINY_MODEL, *TINY_INPUT]
"""The tiny model on the tiny synthetic datasets (:func:`make_tiny_synthetic`)."""


def tiny_mask2former_cfg(output_dir: str, extra: Sequence[str] = (), rankseg: bool = False):
    """The (RankSeg) synthetic config with :data:`TINY_MASK2FORMER` and ``extra`` overrides, not frozen."""
    cfg = get_cfg()
    cfg.merge_from_file(str(SYNTHETIC_RANKSEG_CONFIG if rankseg else SYNTHETIC_CONFIG))
    cfg.merge_from_list([*TINY_MASK2FORMER, "OUTPUT_DIR", str(output_dir), *extra])
    return cfg


def make_tiny_synthetic(root: Path, num_train: int = 8, num_val: int = 5) -> Path:
    """Write the synthetic semantic dataset (``IMAGE_SIZE`` px) where ``$DETECTRON2_DATASETS=root`` finds it."""
    target = Path(root) / "synthetic" / "sem_seg"
    if not (target / "categories.json").is_file():
        generate_semantic_dataset(target, num_train=num_train, num_val=num_val, size=IMAGE_SIZE, num_workers=1)
    return Path(root)


def make_tiny_synthetic_panoptic(root: Path, num_train: int = 1, num_val: int = 5) -> Path:
    """Write the synthetic panoptic dataset (``IMAGE_SIZE`` px) where ``$DETECTRON2_DATASETS=root`` finds it."""
    target = Path(root) / "synthetic" / "panoptic"
    if not (target / "categories.json").is_file():
        generate_panoptic_dataset(target, num_train=num_train, num_val=num_val, size=IMAGE_SIZE, num_workers=1)
    return Path(root)


def load_script(relative_path: str) -> ModuleType:
    """A script of the repository (``train_net.py``, ``datasets/prepare_x.py``, ``tools/x.py``) loaded as a module."""
    path = REPO / relative_path
    spec = importlib.util.spec_from_file_location(path.stem.replace("-", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class WithBackbone(nn.Module):
    """The part of a segmentation model that backbone-only weights reach: ``backbone.*``, plus a head (for tests of
    the converters' ``.pkl`` files loaded through the Checkpointer)."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.sem_seg_head = nn.Linear(4, 2)


def build_on_meta(config: Path) -> Tuple[CfgNode, nn.Module]:
    """(config, model) of a config file, the model built on the meta device (shapes only: no memory, no init)."""
    cfg = get_cfg()
    cfg.merge_from_file(str(config))
    with torch.device("meta"):
        return cfg, build_model(cfg)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

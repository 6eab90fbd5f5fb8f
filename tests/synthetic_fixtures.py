"""Tiny synthetic data and a tiny Mask2Former config, shared by the multi-process and fault tests.

Not a test module: helpers that spawned processes and ``train_net.py`` subprocesses can use too.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Sequence

from mask2former_rankseg.config import get_cfg

REPO = Path(__file__).resolve().parents[1]
SYNTHETIC_CONFIG = REPO / "configs" / "synthetic" / "maskformer2_R18_synthetic.yaml"
SYNTHETIC_RANKSEG_CONFIG = REPO / "configs" / "synthetic" / "maskformer2_R18_synthetic-rankseg.yaml"
IMAGE_SIZE = 64

# The synthetic configs shrunk to ~0.8M parameters and 64 px images (a training step takes ~0.1 s).
TINY_MASK2FORMER: List[str] = [
    "MODEL.RESNETS.STEM_OUT_CHANNELS", "16", "MODEL.RESNETS.RES2_OUT_CHANNELS", "16",
    "MODEL.SEM_SEG_HEAD.CONVS_DIM", "32", "MODEL.SEM_SEG_HEAD.MASK_DIM", "32",
    "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS", "1",
    "MODEL.MASK_FORMER.HIDDEN_DIM", "32", "MODEL.MASK_FORMER.NHEADS", "2",
    "MODEL.MASK_FORMER.DIM_FEEDFORWARD", "64", "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", "8",
    "MODEL.MASK_FORMER.TRAIN_NUM_POINTS", "256", "MODEL.RANKSEG.HIDDEN_DIM", "64",
    "INPUT.MIN_SIZE_TRAIN", f"({IMAGE_SIZE},)", "INPUT.CROP.SIZE", f"({IMAGE_SIZE},{IMAGE_SIZE})",
    "INPUT.MIN_SIZE_TEST", str(IMAGE_SIZE), "INPUT.SIZE_DIVISIBILITY", str(IMAGE_SIZE),
    "DATALOADER.NUM_WORKERS", "0",
]


def make_tiny_synthetic(root: Path, num_train: int = 8, num_val: int = 5) -> Path:
    """Write the synthetic semantic dataset (``IMAGE_SIZE`` px) where ``$DETECTRON2_DATASETS=root`` finds it."""
    from mask2former_rankseg.data import synthetic

    target = Path(root) / "synthetic" / "sem_seg"
    if not (target / "categories.json").is_file():
        synthetic.generate_semantic_dataset(target, num_train=num_train, num_val=num_val, size=IMAGE_SIZE,
                                            num_workers=1)
    return Path(root)


def make_tiny_synthetic_panoptic(root: Path, num_train: int = 1, num_val: int = 5) -> Path:
    """Write the synthetic panoptic dataset (``IMAGE_SIZE`` px) where ``$DETECTRON2_DATASETS=root`` finds it."""
    from mask2former_rankseg.data.synthetic import generate_panoptic_dataset

    target = Path(root) / "synthetic" / "panoptic"
    if not (target / "categories.json").is_file():
        generate_panoptic_dataset(target, num_train=num_train, num_val=num_val, size=IMAGE_SIZE, num_workers=1)
    return Path(root)


def tiny_mask2former_cfg(output_dir: str, extra: Sequence[str] = (), rankseg: bool = False):
    """The (RankSeg) synthetic config with :data:`TINY_MASK2FORMER` and ``extra`` overrides, not frozen."""
    cfg = get_cfg()
    cfg.merge_from_file(str(SYNTHETIC_RANKSEG_CONFIG if rankseg else SYNTHETIC_CONFIG))
    cfg.merge_from_list([*TINY_MASK2FORMER, "OUTPUT_DIR", str(output_dir), *extra])
    return cfg

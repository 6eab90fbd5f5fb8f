"""ADE20K-150 (SceneParsing, ``ADEChallengeData2016``) semantic segmentation: categories and loaders.

Layout under ``$DETECTRON2_DATASETS``::

    ADEChallengeData2016/
      images/{training,validation}/*.jpg
      annotations/{training,validation}/*.png             # raw: 0 = unlabelled, 1..150 = classes
      annotations_detectron2/{training,validation}/*.png  # datasets/prepare_ade20k_sem_seg.py: 0..149, 255
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Tuple

from ...constants import IGNORE_LABEL
from ..catalog import DatasetCatalog, MetadataCatalog
from .sem_seg import dataset_root, load_sem_seg, set_metadata_roots

__all__ = ["ADE20K_SEM_SEG_CATEGORIES", "ADE20K_SEM_SEG_COLORS", "register_all_ade20k_sem_seg", "load_ade20k_sem_seg"]

# The 150 SceneParsing classes in label order (0..149) with their standard visualisation colours (RGB).
# Names exactly as detectron2's ADE20K_SEM_SEG_CATEGORIES (including "window " with its trailing space).
_ADE20K_150: Tuple[Tuple[str, Tuple[int, int, int]], ...] = (
    ("wall", (120, 120, 120)),
    ("building", (180, 120, 120)),
    ("sky", (6, 230, 230)),
    ("floor", (80, 50, 50)),
    ("tree", (4, 200, 3)),
    ("ceiling", (120, 120, 80)),
    ("road, route", (140, 140, 140)),
    ("bed", (204, 5, 255)),
    ("window ", (230, 230, 230)),
    ("grass", (4, 250, 7)),
    ("cabinet", (224, 5, 255)),
    ("sidewalk, pavement", (235, 255, 7)),
    ("person", (150, 5, 61)),
    ("earth, ground", (120, 120, 70)),
    ("door", (8, 255, 51)),
    ("table", (255, 6, 82)),
    ("mountain, mount", (143, 255, 140)),
    ("plant", (204, 255, 4)),
    ("curtain", (255, 51, 7)),
    ("chair", (204, 70, 3)),
    ("car", (0, 102, 200)),
    ("water", (61, 230, 250)),
    ("painting, picture", (255, 6, 51)),
    ("sofa", (11, 102, 255)),
    ("shelf", (255, 7, 71)),
    ("house", (255, 9, 224)),
    ("sea", (9, 7, 230)),
    ("mirror", (220, 220, 220)),
    ("rug", (255, 9, 92)),
    ("field", (112, 9, 255)),
    ("armchair", (8, 255, 214)),
    ("seat", (7, 255, 224)),
    ("fence", (255, 184, 6)),
    ("desk", (10, 255, 71)),
    ("rock, stone", (255, 41, 10)),
    ("wardrobe, closet, press", (7, 255, 255)),
    ("lamp", (224, 255, 8)),
    ("tub", (102, 8, 255)),
    ("rail", (255, 61, 6)),
    ("cushion", (255, 194, 7)),
    ("base, pedestal, stand", (255, 122, 8)),
    ("box", (0, 255, 20)),
    ("column, pillar", (255, 8, 41)),
    ("signboard, sign", (255, 5, 153)),
    ("chest of drawers, chest, bureau, dresser", (6, 51, 255)),
    ("counter", (235, 12, 255)),
    ("sand", (160, 150, 20)),
    ("sink", (0, 163, 255)),
    ("skyscraper", (140, 140, 140)),
    ("fireplace", (250, 10, 15)),
    ("refrigerator, icebox", (20, 255, 0)),
    ("grandstand, covered stand", (31, 255, 0)),
    ("path", (255, 31, 0)),
    ("stairs", (255, 224, 0)),
    ("runway", (153, 255, 0)),
    ("case, display case, showcase, vitrine", (0, 0, 255)),
    ("pool table, billiard table, snooker table", (255, 71, 0)),
    ("pillow", (0, 235, 255)),
    ("screen door, screen", (0, 173, 255)),
    ("stairway, staircase", (31, 0, 255)),
    ("river", (11, 200, 200)),
    ("bridge, span", (255, 82, 0)),
    ("bookcase", (0, 255, 245)),
    ("blind, screen", (0, 61, 255)),
    ("coffee table", (0, 255, 112)),
    ("toilet, can, commode, crapper, pot, potty, stool, throne", (0, 255, 133)),
    ("flower", (255, 0, 0)),
    ("book", (255, 163, 0)),
    ("hill", (255, 102, 0)),
    ("bench", (194, 255, 0)),
    ("countertop", (0, 143, 255)),
    ("stove", (51, 255, 0)),
    ("palm, palm tree", (0, 82, 255)),
    ("kitchen island", (0, 255, 41)),
    ("computer", (0, 255, 173)),
    ("swivel chair", (10, 0, 255)),
    ("boat", (173, 255, 0)),
    ("bar", (0, 255, 153)),
    ("arcade machine", (255, 92, 0)),
    ("hovel, hut, hutch, shack, shanty", (255, 0, 255)),
    ("bus", (255, 0, 245)),
    ("towel", (255, 0, 102)),
    ("light", (255, 173, 0)),
    ("truck", (255, 0, 20)),
    ("tower", (255, 184, 184)),
    ("chandelier", (0, 31, 255)),
    ("awning, sunshade, sunblind", (0, 255, 61)),
    ("street lamp", (0, 71, 255)),
    ("booth", (255, 0, 204)),
    ("tv", (0, 255, 194)),
    ("plane", (0, 255, 82)),
    ("dirt track", (0, 10, 255)),
    ("clothes", (0, 112, 255)),
    ("pole", (51, 0, 255)),
    ("land, ground, soil", (0, 194, 255)),
    ("bannister, banister, balustrade, balusters, handrail", (0, 122, 255)),
    ("escalator, moving staircase, moving stairway", (0, 255, 163)),
    ("ottoman, pouf, pouffe, puff, hassock", (255, 153, 0)),
    ("bottle", (0, 255, 10)),
    ("buffet, counter, sideboard", (255, 112, 0)),
    ("poster, posting, placard, notice, bill, card", (143, 255, 0)),
    ("stage", (82, 0, 255)),
    ("van", (163, 255, 0)),
    ("ship", (255, 235, 0)),
    ("fountain", (8, 184, 170)),
    ("conveyer belt, conveyor belt, conveyer, conveyor, transporter", (133, 0, 255)),
    ("canopy", (0, 255, 92)),
    ("washer, automatic washer, washing machine", (184, 0, 255)),
    ("plaything, toy", (255, 0, 31)),
    ("pool", (0, 184, 255)),
    ("stool", (0, 214, 255)),
    ("barrel, cask", (255, 0, 112)),
    ("basket, handbasket", (92, 255, 0)),
    ("falls", (0, 224, 255)),
    ("tent", (112, 224, 255)),
    ("bag", (70, 184, 160)),
    ("minibike, motorbike", (163, 0, 255)),
    ("cradle", (153, 0, 255)),
    ("oven", (71, 255, 0)),
    ("ball", (255, 0, 163)),
    ("food, solid food", (255, 204, 0)),
    ("step, stair", (255, 0, 143)),
    ("tank, storage tank", (0, 255, 235)),
    ("trade name", (133, 255, 0)),
    ("microwave", (255, 0, 235)),
    ("pot", (245, 0, 255)),
    ("animal", (255, 0, 122)),
    ("bicycle", (255, 245, 0)),
    ("lake", (10, 190, 212)),
    ("dishwasher", (214, 255, 0)),
    ("screen", (0, 204, 255)),
    ("blanket, cover", (20, 0, 255)),
    ("sculpture", (255, 255, 0)),
    ("hood, exhaust hood", (0, 153, 255)),
    ("sconce", (0, 41, 255)),
    ("vase", (0, 255, 204)),
    ("traffic light", (41, 0, 255)),
    ("tray", (41, 255, 0)),
    ("trash can", (173, 0, 255)),
    ("fan", (0, 245, 255)),
    ("pier", (71, 0, 255)),
    ("crt screen", (122, 0, 255)),
    ("plate", (0, 255, 184)),
    ("monitor", (0, 92, 255)),
    ("bulletin board", (184, 255, 0)),
    ("shower", (0, 133, 255)),
    ("radiator", (255, 214, 0)),
    ("glass, drinking glass", (25, 194, 194)),
    ("clock", (102, 255, 0)),
    ("flag", (92, 0, 255)),
)

ADE20K_SEM_SEG_CATEGORIES: List[str] = [name for name, _ in _ADE20K_150]
ADE20K_SEM_SEG_COLORS: List[List[int]] = [list(color) for _, color in _ADE20K_150]

_SPLITS = {"ade20k_sem_seg_train": "training", "ade20k_sem_seg_val": "validation"}


def _ade_dirs(split: str) -> Tuple[Path, Path]:
    root = dataset_root() / "ADEChallengeData2016"
    return root / "images" / split, root / "annotations_detectron2" / split


def load_ade20k_sem_seg(name: str) -> List[Dict[str, Any]]:
    """Dataset dicts of ``ade20k_sem_seg_{train,val}`` under the current ``$DETECTRON2_DATASETS``."""
    split = _SPLITS[name]
    image_dir, gt_dir = _ade_dirs(split)
    if not image_dir.is_dir():
        raise FileNotFoundError(
            f"ADE20K images not found: expected {image_dir}. Download ADEChallengeData2016.zip from "
            "http://sceneparsing.csail.mit.edu/ and unzip it into $DETECTRON2_DATASETS (now "
            f"{dataset_root()}), then run `python datasets/prepare_ade20k_sem_seg.py`; see datasets/README.md."
        )
    if not gt_dir.is_dir():
        raise FileNotFoundError(
            f"ADE20K labels not found: expected {gt_dir}. Create them from "
            f"{gt_dir.parent.parent / 'annotations'} with `python datasets/prepare_ade20k_sem_seg.py`; "
            "see datasets/README.md."
        )
    set_metadata_roots(name, image_dir, gt_dir)
    return load_sem_seg(gt_dir, image_dir, gt_ext="png", image_ext="jpg")


def register_all_ade20k_sem_seg() -> None:
    """Register ``ade20k_sem_seg_train`` / ``ade20k_sem_seg_val`` (cheap: nothing is read)."""
    for name, split in _SPLITS.items():
        if name in DatasetCatalog:
            continue
        DatasetCatalog.register(name, lambda name=name: load_ade20k_sem_seg(name))
        image_dir, gt_dir = _ade_dirs(split)
        MetadataCatalog.get(name).set(
            stuff_classes=ADE20K_SEM_SEG_CATEGORIES[:],
            stuff_colors=[c[:] for c in ADE20K_SEM_SEG_COLORS],
            ignore_label=IGNORE_LABEL,
            evaluator_type="sem_seg",
            image_root=str(image_dir),
            sem_seg_root=str(gt_dir),
        )

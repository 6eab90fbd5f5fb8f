"""Builtin datasets: category tables, loaders and registration (one module per dataset family).

Nothing is registered on import: :func:`register_all_builtin` registers every builtin name (metadata only; nothing
is read), and the catalogs call it on their first use (see :mod:`mask2former_rankseg.data.catalog`).
"""

from .ade20k import ADE20K_SEM_SEG_CATEGORIES, ADE20K_SEM_SEG_COLORS, register_all_ade20k_sem_seg
from .ade20k_full import ADE20K_FULL_CATEGORIES, ADE20K_FULL_IGNORE_LABEL, register_all_ade20k_full
from .coco_lvis import COCO_LVIS_CLASSES, COCO_LVIS_IGNORE_LABEL, register_all_coco_lvis
from .coco_stuff import COCO_STUFF_CATEGORIES, register_all_coco_stuff
from .instance import ADE20K_INSTANCE_CATEGORIES, load_coco_instances_json, register_all_instance
from .palette import voc_colormap
from .panoptic import (
    ADE20K_PANOPTIC_CATEGORIES,
    COCO_PANOPTIC_CATEGORIES,
    load_coco_panoptic_json,
    register_all_panoptic,
)
from .pascal_context import PASCAL_CONTEXT_60_CATEGORIES, register_all_pascal_context
from .sem_seg import dataset_root, load_sem_seg, register_sem_seg
from .synthetic import register_all_synthetic
from .vspw import VSPW_CLASSES, load_vspw, register_all_vspw, vspw_labels_to_contiguous
from .ytvis import YTVIS_CATEGORIES_2019, YTVIS_CATEGORIES_2021, load_ytvis_json, register_all_ytvis

__all__ = [
    "ADE20K_FULL_CATEGORIES",
    "ADE20K_FULL_IGNORE_LABEL",
    "ADE20K_SEM_SEG_CATEGORIES",
    "ADE20K_SEM_SEG_COLORS",
    "ADE20K_INSTANCE_CATEGORIES",
    "ADE20K_PANOPTIC_CATEGORIES",
    "COCO_LVIS_CLASSES",
    "COCO_LVIS_IGNORE_LABEL",
    "COCO_PANOPTIC_CATEGORIES",
    "COCO_STUFF_CATEGORIES",
    "PASCAL_CONTEXT_60_CATEGORIES",
    "load_coco_instances_json",
    "load_coco_panoptic_json",
    "dataset_root",
    "load_sem_seg",
    "register_all_builtin",
    "register_sem_seg",
    "VSPW_CLASSES",
    "YTVIS_CATEGORIES_2019",
    "YTVIS_CATEGORIES_2021",
    "load_vspw",
    "load_ytvis_json",
    "vspw_labels_to_contiguous",
    "voc_colormap",
]


def register_all_builtin() -> None:
    """Register every builtin dataset (idempotent)."""
    register_all_ade20k_sem_seg()
    register_all_ade20k_full()
    register_all_coco_stuff()
    register_all_pascal_context()
    register_all_coco_lvis()
    register_all_panoptic()
    register_all_instance()
    register_all_ytvis()
    register_all_vspw()
    register_all_synthetic()

"""Generic loader for semantic segmentation trees: an image folder and a label-PNG folder, paired by
file stem."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

logger = logging.getLogger(__name__)

__all__ = ["load_sem_seg", "dataset_root", "set_metadata_roots"]


def load_sem_seg(gt_root: str | Path, image_root: str | Path, gt_ext: str = "png", image_ext: str = "jpg",
                 image_size: Optional[Tuple[int, int]] = None) -> List[Dict[str, Any]]:
    """Dataset dicts for every image in ``image_root`` with its label map in ``gt_root``.

    Images and labels are paired by file stem and returned sorted by stem. Files are not opened.

    Args:
        gt_root: folder of ``*.{gt_ext}`` label maps.
        image_root: folder of ``*.{image_ext}`` images.
        image_size: (height, width) of every image when known (then added to each dict; otherwise
            the mappers fill it in from the image).
    Returns:
        Dicts with ``file_name``, ``sem_seg_file_name``, ``image_id`` (the stem)
        [, ``height``, ``width``].
    Raises:
        FileNotFoundError: a folder is missing, it holds no image, or an image has no label map.
    """
    gt_root, image_root = Path(gt_root), Path(image_root)
    for folder in (image_root, gt_root):
        if not folder.is_dir():
            raise FileNotFoundError(f"Dataset folder {folder} does not exist.")
    images = {p.stem: p for p in image_root.iterdir() if p.suffix == f".{image_ext}"}
    gts = {p.stem: p for p in gt_root.iterdir() if p.suffix == f".{gt_ext}"}
    if not images:
        raise FileNotFoundError(f"No *.{image_ext} images found in {image_root}.")
    missing = sorted(set(images) - set(gts))
    if missing:
        raise FileNotFoundError(
            f"Image {images[missing[0]]} has no label map {gt_root / (missing[0] + '.' + gt_ext)} "
            f"({len(missing)} image(s) without labels in total)."
        )
    extra = len(set(gts) - set(images))
    if extra:
        logger.warning("%d label maps in %s have no image in %s; they are ignored.", extra, gt_root, image_root)
    dicts = []
    for stem in sorted(images):
        record: Dict[str, Any] = {
            "file_name": str(images[stem]),
            "sem_seg_file_name": str(gts[stem]),
            "image_id": stem,
        }
        if image_size is not None:
            record["height"], record["width"] = int(image_size[0]), int(image_size[1])
        dicts.append(record)
    logger.info("Loaded %d images with semantic segmentation from %s", len(dicts), image_root)
    return dicts


def dataset_root() -> Path:
    """The datasets root: ``$DETECTRON2_DATASETS`` (default ``datasets``), read at call time."""
    import os

    return Path(os.path.expanduser(os.environ.get("DETECTRON2_DATASETS", "datasets")))


def set_metadata_roots(name: str, image_root: str | Path, sem_seg_root: str | Path) -> None:
    """Record the folders a loader actually read in the metadata of ``name`` (see :func:`update_metadata`)."""
    update_metadata(name, image_root=str(image_root), sem_seg_root=str(sem_seg_root))


def update_metadata(name: str, **fields) -> None:
    """Set metadata fields of ``name`` that may already hold other values.

    Path fields are set at registration from the environment at import time; a loader that runs later
    under another ``$DETECTRON2_DATASETS`` updates them (Metadata refuses plain re-assignment, so its
    fields are re-created).
    """
    from ..catalog import MetadataCatalog

    current = MetadataCatalog.get(name).as_dict()
    if all(current.get(k) == v for k, v in fields.items()):
        return
    current.update(fields)
    MetadataCatalog.remove(name)
    MetadataCatalog.get(name).set(**current)

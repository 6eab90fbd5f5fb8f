"""Generic loader for semantic segmentation trees: an image folder and a label-PNG folder, paired by
file stem."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from ..catalog import DatasetCatalog, MetadataCatalog

logger = logging.getLogger(__name__)

__all__ = ["load_sem_seg", "label_stems", "dataset_root", "register_sem_seg", "require_dir", "set_metadata_roots"]


def load_sem_seg(gt_root: str | Path, image_root: str | Path | Sequence[str | Path], gt_ext: str = "png",
                 image_ext: str = "jpg", image_size: Optional[Tuple[int, int]] = None, *,
                 stems: Optional[Iterable[str]] = None) -> List[Dict[str, Any]]:
    """Dataset dicts for the images in ``image_root`` with their label maps in ``gt_root``.

    Images and labels are paired by file stem and returned sorted by stem. Files are not opened.

    Args:
        gt_root: folder of ``*.{gt_ext}`` label maps.
        image_root: folder of ``*.{image_ext}`` images, or several folders (a stem is looked up in them in
            order; e.g. COCO's ``train2017`` and ``val2017``).
        image_size: (height, width) of every image when known (then added to each dict; otherwise
            the mappers fill it in from the image).
        stems: the images to use (each must have an image and a label map), e.g. the label maps of one
            split when the image folder holds more (Pascal-Context's ``JPEGImages``). Default: every image.
    Returns:
        Dicts with ``file_name``, ``sem_seg_file_name``, ``image_id`` (the stem)
        [, ``height``, ``width``].
    Raises:
        FileNotFoundError: a folder is missing, it holds no image, or an image has no label map (or a
            requested stem has no image).
    """
    gt_root = Path(gt_root)
    image_roots = [Path(image_root)] if isinstance(image_root, (str, Path)) else [Path(r) for r in image_root]
    for folder in (*image_roots, gt_root):
        if not folder.is_dir():
            raise FileNotFoundError(f"Dataset folder {folder} does not exist.")
    images: Dict[str, Path] = {}
    for root in image_roots:
        for p in root.iterdir():
            if p.suffix == f".{image_ext}":
                images.setdefault(p.stem, p)
    gts = {p.stem: p for p in gt_root.iterdir() if p.suffix == f".{gt_ext}"}
    where = " or ".join(str(r) for r in image_roots)
    if stems is not None:
        wanted = set(stems)
        missing_images = sorted(wanted - set(images))
        if missing_images:
            raise FileNotFoundError(
                f"Label map {gt_root / (missing_images[0] + '.' + gt_ext)} has no image {missing_images[0]}."
                f"{image_ext} in {where} ({len(missing_images)} without images in total)."
            )
        images = {stem: images[stem] for stem in wanted}
    if not images:
        raise FileNotFoundError(f"No *.{image_ext} images found in {where}.")
    missing = sorted(set(images) - set(gts))
    if missing:
        raise FileNotFoundError(
            f"Image {images[missing[0]]} has no label map {gt_root / (missing[0] + '.' + gt_ext)} "
            f"({len(missing)} image(s) without labels in total)."
        )
    extra = len(set(gts) - set(images))
    if extra:
        logger.warning("%d label maps in %s have no image in %s; they are ignored.", extra, gt_root, where)
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
    logger.info("Loaded %d images with semantic segmentation from %s", len(dicts), where)
    return dicts


def label_stems(gt_root: str | Path, gt_ext: str = "png") -> List[str]:
    """Sorted stems of the ``*.{gt_ext}`` label maps in ``gt_root`` (which must exist)."""
    gt_root = Path(gt_root)
    if not gt_root.is_dir():
        raise FileNotFoundError(f"Dataset folder {gt_root} does not exist.")
    return sorted(p.stem for p in gt_root.iterdir() if p.suffix == f".{gt_ext}")


def require_dir(folder: Path, what: str, fix: str) -> None:
    """Raise ``FileNotFoundError`` naming ``folder`` (the expected ``what``) and ``fix`` when it is missing."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} not found: expected {folder} ($DETECTRON2_DATASETS is now "
                                f"{dataset_root()}). {fix} See datasets/README.md.")


def register_sem_seg(name: str, loader: Callable[[], List[Dict[str, Any]]], *, stuff_classes: Sequence[str],
                     stuff_colors: Sequence[Sequence[int]], ignore_label: int, image_root: str | Path,
                     sem_seg_root: str | Path, **extra: Any) -> None:
    """Register a semantic segmentation dataset and its metadata (``evaluator_type="sem_seg"``) unless
    ``name`` is already registered. ``extra`` holds further metadata (e.g. ``stuff_dataset_id_to_contiguous_id``)."""
    if name in DatasetCatalog:
        return
    if len(stuff_classes) != len(stuff_colors):
        raise ValueError(f"Dataset {name!r}: {len(stuff_classes)} classes but {len(stuff_colors)} colours.")
    DatasetCatalog.register(name, loader)
    MetadataCatalog.get(name).set(
        stuff_classes=list(stuff_classes),
        stuff_colors=[list(c) for c in stuff_colors],
        ignore_label=int(ignore_label),
        evaluator_type="sem_seg",
        image_root=str(image_root),
        sem_seg_root=str(sem_seg_root),
        **extra,
    )


def dataset_root() -> Path:
    """The datasets root: ``$DETECTRON2_DATASETS`` (default ``datasets``), read at call time."""
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
    current = MetadataCatalog.get(name).as_dict()
    if all(current.get(k) == v for k, v in fields.items()):
        return
    current.update(fields)
    MetadataCatalog.remove(name)
    MetadataCatalog.get(name).set(**current)

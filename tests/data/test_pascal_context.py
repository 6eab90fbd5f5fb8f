"""Pascal-Context-59/60: categories, registration on its layout, and datasets/prepare_pascal_context.py (RLE and
polygons decoded without the detail API) end to end through the registered loaders."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from mask2former_rankseg.data import DatasetCatalog, MetadataCatalog
from mask2former_rankseg.data.datasets.pascal_context import PASCAL_CONTEXT_60_CATEGORIES, pascal_context_label_lut


def test_categories():
    ids = [cid for cid, _, _ in PASCAL_CONTEXT_60_CATEGORIES]
    assert len(ids) == 60 and ids == sorted(ids) and ids[0] == 0 and ids[-1] == 458
    names = [n for _, n, _ in PASCAL_CONTEXT_60_CATEGORIES]
    assert names[:3] == ["background", "aeroplane", "bag"] and names[-1] == "wood"
    m59, m60 = (MetadataCatalog.get(f"pascal_context_{n}_sem_seg_val") for n in (59, 60))
    assert m60.stuff_classes == names and m59.stuff_classes == names[1:]
    assert m59.stuff_colors == m60.stuff_colors[1:] and m59.ignore_label == m60.ignore_label == 255
    assert m59.stuff_dataset_id_to_contiguous_id[2] == 0 and m60.stuff_dataset_id_to_contiguous_id[2] == 1
    lut = pascal_context_label_lut(459)
    assert lut[2] == 1 and lut[458] == 59 and lut[3] == 0 and lut[0] == 0  # id 3 is no class of the 59


def _box_polygon(x0, y0, x1, y1):
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def _write_release(root):
    """Two 6x8 VOC2010 images: 2008_000001 (train) and 2008_000002 (val)."""
    voc = root / "VOCdevkit" / "VOC2010"
    (voc / "JPEGImages").mkdir(parents=True)
    for stem in ("2008_000001", "2008_000002", "2007_000032"):  # the third is a VOC image with no context labels
        Image.fromarray(np.zeros((6, 8, 3), dtype=np.uint8)).save(voc / "JPEGImages" / f"{stem}.jpg")
    sky = np.zeros((6, 8), dtype=np.uint8, order="F")
    sky[:3] = 1  # top half
    sky_rle = mask_utils.encode(sky)
    sky_rle["counts"] = sky_rle["counts"].decode("ascii")  # compressed RLE as stored in JSON
    person = np.zeros((6, 8), dtype=np.uint8, order="F")
    person[1:5, 2:4] = 1
    uncompressed = {"size": [6, 8], "counts": [int(c) for c in _uncompressed_counts(person)]}
    data = {
        "images": [
            {"image_id": 1, "file_name": "2008_000001.jpg", "height": 6, "width": 8, "phase": "train"},
            {"image_id": 2, "file_name": "2008_000002.jpg", "height": 6, "width": 8, "phase": "val"},
        ],
        "categories": [{"category_id": c, "name": n} for c, n in ((360, "sky"), (284, "person"), (3, "other"),
                                                                   (458, "wood"))],
        "annos_segmentation": [
            {"id": 10, "image_id": 1, "category_id": 360, "segmentation": sky_rle},             # sky: 60-label 47
            {"id": 11, "image_id": 1, "category_id": 284, "segmentation": uncompressed},        # person over sky
            {"id": 12, "image_id": 1, "category_id": 3, "segmentation": _box_polygon(0, 0, 2, 2)},  # not a class
            {"id": 13, "image_id": 2, "category_id": 458, "segmentation": _box_polygon(4, 2, 8, 6)},  # wood
        ],
    }
    (voc / "trainval_merged.json").write_text(json.dumps(data))
    return voc


def _uncompressed_counts(mask):
    flat = mask.flatten(order="F")
    counts, current, run = [], 0, 0
    for v in flat:
        if v != current:
            counts.append(run)
            current, run = v, 0
        run += 1
    counts.append(run)
    return counts


def test_prepare_then_load(tmp_path, monkeypatch, prepare_script):
    _write_release(tmp_path)
    assert prepare_script("prepare_pascal_context").main(["--root", str(tmp_path)]) == 0
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    (train60,) = DatasetCatalog.get("pascal_context_60_sem_seg_train")
    (train59,) = DatasetCatalog.get("pascal_context_59_sem_seg_train")
    (val59,) = DatasetCatalog.get("pascal_context_59_sem_seg_val")
    assert train60["image_id"] == train59["image_id"] == "2008_000001" and val59["image_id"] == "2008_000002"
    sky, person = [n for _, n, _ in PASCAL_CONTEXT_60_CATEGORIES].index("sky"), 37
    assert PASCAL_CONTEXT_60_CATEGORIES[person][1] == "person"

    expected60 = np.zeros((6, 8), dtype=np.int64)
    expected60[:3] = sky
    expected60[1:5, 2:4] = person       # painted after the sky
    expected60[0:2, 0:2] = 0            # the polygon of a non-class category, painted last: background
    np.testing.assert_array_equal(np.asarray(Image.open(train60["sem_seg_file_name"])), expected60)
    expected59 = np.where(expected60 == 0, 255, expected60 - 1)
    np.testing.assert_array_equal(np.asarray(Image.open(train59["sem_seg_file_name"])), expected59)
    wood59 = np.asarray(Image.open(val59["sem_seg_file_name"]))
    assert (wood59[2:6, 4:8] == 58).all() and (wood59[:2] == 255).all()


def test_prepare_errors(tmp_path, prepare_script):
    script = prepare_script("prepare_pascal_context")
    assert script.main(["--root", str(tmp_path)]) == 1  # no release at all
    voc = _write_release(tmp_path)
    (voc / "JPEGImages" / "2008_000002.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="2008_000002.jpg"):
        script.prepare(tmp_path, splits=["val"])
    (voc / "trainval_merged.json").write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match="not a Pascal-Context annotation file"):
        script.prepare(tmp_path)


def test_loader_needs_the_images_of_its_labels(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    voc = tmp_path / "VOCdevkit" / "VOC2010"
    (voc / "JPEGImages").mkdir(parents=True)
    gt = voc / "annotations_detectron2" / "pascal_context_60" / "val"
    gt.mkdir(parents=True)
    Image.fromarray(np.zeros((2, 2), dtype=np.uint8)).save(gt / "2008_000009.png")
    with pytest.raises(FileNotFoundError, match="2008_000009.png has no image 2008_000009.jpg"):
        DatasetCatalog.get("pascal_context_60_sem_seg_val")
    with pytest.raises(FileNotFoundError, match="pascal_context_59/train.*prepare_pascal_context"):
        DatasetCatalog.get("pascal_context_59_sem_seg_train")

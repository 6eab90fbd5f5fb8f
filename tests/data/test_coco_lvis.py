"""COCO+LVIS (1284 classes): the class list as RankSeg's, the colour map, and datasets/prepare_coco_lvis_sem_seg.py
on a two-image LVIS v1 + COCO-Stuff fixture, loaded back through the registered loader."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from mask2former_rankseg.data import DatasetCatalog, MetadataCatalog
from mask2former_rankseg.data.datasets import voc_colormap
from mask2former_rankseg.data.datasets.coco_lvis import (
    COCO_LVIS_CLASSES,
    COCO_LVIS_STUFF_NAMES,
    LVIS_V1_CATEGORY_NAMES,
    coco_lvis_stuff_lut,
)

IGNORE = 65535


def test_classes_are_rankseg_coco_lvis_classes():
    assert len(LVIS_V1_CATEGORY_NAMES) == 1203 and len(COCO_LVIS_STUFF_NAMES) == 81 and len(COCO_LVIS_CLASSES) == 1284
    assert len(set(COCO_LVIS_CLASSES)) == 1284
    assert COCO_LVIS_CLASSES[:3] == ("aerosol_can", "air_conditioner", "airplane")
    assert COCO_LVIS_CLASSES[1202:1206] == ("zucchini", "branch", "bridge", "building-other")
    assert COCO_LVIS_CLASSES[-1] == "wood"
    merged = {"banner", "blanket", "cabinet", "cupboard", "curtain", "napkin", "pillow", "salad", "table", "towel"}
    assert merged <= set(LVIS_V1_CATEGORY_NAMES) and not merged & set(COCO_LVIS_STUFF_NAMES)
    meta = MetadataCatalog.get("coco_lvis_sem_seg_train")
    assert meta.ignore_label == IGNORE and len(meta.stuff_classes) == 1284
    # RankSeg's COCO_LVIS_PALLETE entries 0, 1, 2, 1283 (recorded)
    assert [meta.stuff_colors[i] for i in (0, 1, 2, 1283)] == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 144, 32]]


def test_voc_colormap():
    colors = voc_colormap(9)
    assert colors[:4] == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]] and colors[8] == [64, 0, 0]
    assert len({tuple(c) for c in voc_colormap(4096)}) == 4096


def test_stuff_lookup():
    lut = coco_lvis_stuff_lut()
    label = {n: i for i, n in enumerate(COCO_LVIS_CLASSES)}
    assert lut[164] == label["table"] == LVIS_V1_CATEGORY_NAMES.index("table")  # COCO-Stuff "table" (id 165)
    assert lut[93] == label["branch"] == 1203 and lut[181] == 1283  # ids 94 and 182
    assert lut[0] == lut[182] == lut[255] == IGNORE  # a thing (person), "other", unlabelled


def _box(x0, y0, x1, y1):
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def test_prepare_then_load(tmp_path, monkeypatch, prepare_script):
    coco = tmp_path / "coco"
    for d in ("train2017", "val2017", "stuffthingmaps/train2017", "stuffthingmaps/val2017", "annotations"):
        (coco / d).mkdir(parents=True)
    # LVIS v1 val holds images from COCO train2017 and val2017
    url = "http://images.cocodataset.org/"
    images = [{"id": 9, "coco_url": url + "train2017/000000000009.jpg", "height": 6, "width": 8},
              {"id": 42, "coco_url": url + "val2017/000000000042.jpg", "height": 6, "width": 8}]
    stuff = np.full((6, 8), 164, dtype=np.uint8)  # COCO-Stuff "table" everywhere ...
    stuff[:, 6:] = 181                            # ... but wood on the right
    stuff[0, :] = 0                               # a person row (a COCO thing: ignore unless LVIS covers it)
    stuff[5, 0] = 255
    for img in images:
        folder, name = img["coco_url"].split("/")[-2:]
        Image.fromarray(np.zeros((6, 8, 3), dtype=np.uint8)).save(coco / folder / name)
        Image.fromarray(stuff).save(coco / "stuffthingmaps" / folder / name.replace(".jpg", ".png"))
    annotations = [  # the small zucchini is listed first but painted last (smaller area)
        {"id": 1, "image_id": 9, "category_id": 1203, "segmentation": _box(1, 1, 3, 3), "area": 4.0},
        {"id": 2, "image_id": 9, "category_id": 1, "segmentation": _box(0, 0, 4, 4), "area": 16.0},
    ]
    (coco / "annotations" / "lvis_v1_val.json").write_text(json.dumps({"images": images, "annotations": annotations,
                                                                      "categories": []}))
    assert prepare_script("prepare_coco_lvis_sem_seg").main(["--root", str(tmp_path), "--splits", "val"]) == 0

    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    records = DatasetCatalog.get("coco_lvis_sem_seg_val")
    assert [r["image_id"] for r in records] == ["000000000009", "000000000042"]
    assert records[0]["file_name"].endswith("train2017/000000000009.jpg")
    assert records[1]["file_name"].endswith("val2017/000000000042.jpg")
    table = LVIS_V1_CATEGORY_NAMES.index("table")
    expected = np.full((6, 8), table, dtype=np.int64)
    expected[:, 6:] = 1283
    expected[0, :], expected[5, 0] = IGNORE, IGNORE
    plain = np.asarray(Image.open(records[1]["sem_seg_file_name"]))  # no LVIS annotation on image 42
    assert plain.dtype == np.uint16
    np.testing.assert_array_equal(plain, expected)
    expected[0:4, 0:4] = 0        # aerosol_can over the person row and the table
    expected[1:3, 1:3] = 1202     # zucchini on top
    np.testing.assert_array_equal(np.asarray(Image.open(records[0]["sem_seg_file_name"])), expected)


def test_prepare_errors(tmp_path, prepare_script):
    script = prepare_script("prepare_coco_lvis_sem_seg")
    assert script.main(["--root", str(tmp_path), "--splits", "val"]) == 1  # no annotations
    (tmp_path / "coco" / "annotations").mkdir(parents=True)
    image = {"id": 1, "coco_url": "http://images.cocodataset.org/val2017/000000000001.jpg", "height": 2, "width": 2}
    (tmp_path / "coco" / "annotations" / "lvis_v1_val.json").write_text(json.dumps({"images": [image],
                                                                                   "annotations": []}))
    with pytest.raises(FileNotFoundError, match="stuffthingmaps/val2017/000000000001.png"):
        script.convert_split(tmp_path / "coco", "val")
    with pytest.raises(ValueError, match="names no COCO 2017 folder"):
        script.image_folder_and_stem({"id": 3, "coco_url": "http://x/test2015/1.jpg"})

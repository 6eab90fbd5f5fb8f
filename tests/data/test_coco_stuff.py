"""COCO-Stuff-164k: categories, registration on its on-disk layout, and datasets/prepare_coco_stuff_164k_sem_seg.py
end to end through the registered loader and the evaluator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mask2former_rankseg.data import DatasetCatalog, MetadataCatalog
from mask2former_rankseg.data.datasets.coco_stuff import COCO_STUFF_CATEGORIES, coco_stuff_label_lut
from mask2former_rankseg.evaluation import SemSegEvaluator


def test_categories():
    ids = [cid for cid, _, _ in COCO_STUFF_CATEGORIES]
    assert len(COCO_STUFF_CATEGORIES) == 171 and len(set(ids)) == 171
    # 80 things with COCO's ids (11 of 1..90 unused), then the 91 stuff classes 92..182
    assert ids[79] == 90 and ids[80:] == list(range(92, 183))
    assert set(range(1, 91)) - set(ids[:80]) == {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}
    assert COCO_STUFF_CATEGORIES[0][1] == "person" and COCO_STUFF_CATEGORIES[-1][1] == "wood"
    meta = MetadataCatalog.get("coco_2017_train_stuff_sem_seg")
    assert len(meta.stuff_classes) == len(meta.stuff_colors) == 171 and meta.ignore_label == 255
    assert meta.stuff_dataset_id_to_contiguous_id[92] == 80 and meta.evaluator_type == "sem_seg"


def test_label_lookup():
    lut = coco_stuff_label_lut()
    assert lut[0] == 0 and lut[89] == 79 and lut[91] == 80 and lut[181] == 170  # ids 1, 90, 92, 182
    assert lut[182] == 255 and lut[255] == 255  # "other" (id 183) and unlabelled
    assert lut[11] == -1  # id 12 is unused: invalid


def _raw_map():
    """4x6 stuffthingmaps values: person (0), banner (91), wood (181), unlabelled (255), other (182)."""
    raw = np.full((4, 6), 255, dtype=np.uint8)
    raw[:2, :3] = 0
    raw[:2, 3:] = 91
    raw[2:, :3] = 181
    raw[3, 5] = 182
    return raw


def test_prepare_then_load_and_evaluate(tmp_path, monkeypatch, prepare_script):
    coco = tmp_path / "coco"
    for split in ("val2017",):
        (coco / split).mkdir(parents=True)
        (coco / "stuffthingmaps" / split).mkdir(parents=True)
    Image.fromarray(np.zeros((4, 6, 3), dtype=np.uint8)).save(coco / "val2017" / "000000000139.jpg")
    Image.fromarray(_raw_map()).save(coco / "stuffthingmaps" / "val2017" / "000000000139.png")
    script = prepare_script("prepare_coco_stuff_164k_sem_seg")
    assert script.main(["--root", str(tmp_path), "--splits", "val2017"]) == 0

    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    (record,) = DatasetCatalog.get("coco_2017_test_stuff_sem_seg")
    assert record["image_id"] == "000000000139" and record["file_name"].endswith("val2017/000000000139.jpg")
    labels = np.asarray(Image.open(record["sem_seg_file_name"]))
    expected = np.full((4, 6), 255)
    expected[:2, :3], expected[:2, 3:], expected[2:, :3] = 0, 80, 170
    expected[3, 5] = 255
    np.testing.assert_array_equal(labels, expected)

    # a prediction right everywhere but on the 3 "wood" pixels of row 2 (predicted banner): IoU(wood) = 3/6,
    # IoU(banner) = 6/9, IoU(person) = 1 -> mIoU = (1 + 2/3 + 1/2) / 3
    pred = np.where(expected == 255, 0, expected)
    pred[2, :3] = 80
    scores = torch.nn.functional.one_hot(torch.as_tensor(pred), 171).permute(2, 0, 1).float()
    evaluator = SemSegEvaluator("coco_2017_test_stuff_sem_seg", distributed=False)
    evaluator.process([record], [{"sem_seg": scores}])
    assert evaluator.evaluate()["sem_seg"]["mIoU"] == pytest.approx(100 * (1 + 2 / 3 + 1 / 2) / 3)


def test_prepare_rejects_unknown_values_and_missing_input(tmp_path, prepare_script):
    (tmp_path / "coco" / "stuffthingmaps" / "val2017").mkdir(parents=True)
    raw = _raw_map()
    raw[0, 0] = 11  # COCO id 12 does not exist
    Image.fromarray(raw).save(tmp_path / "coco" / "stuffthingmaps" / "val2017" / "bad.png")
    script = prepare_script("prepare_coco_stuff_164k_sem_seg")
    with pytest.raises(ValueError, match=r"bad.png holds values \[11\]"):
        script.prepare(tmp_path, ["val2017"])
    assert not list((tmp_path / "coco" / "stuffthingmaps_detectron2" / "val2017").iterdir())  # nothing half-written
    assert script.main(["--root", str(tmp_path / "missing")]) == 1


def test_missing_dataset_names_the_path_and_the_script(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    (tmp_path / "coco" / "train2017").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="stuffthingmaps_detectron2/train2017.*prepare_coco_stuff_164k"):
        DatasetCatalog.get("coco_2017_train_stuff_sem_seg")

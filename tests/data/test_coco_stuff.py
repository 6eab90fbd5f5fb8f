"""COCO-Stuff-164k and -10k: categories, registration on their on-disk layouts, and
datasets/prepare_coco_stuff_{164k,10k}_sem_seg.py end to end through the registered loaders (and the evaluator)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from mask2former_rankseg.data import DatasetCatalog, MetadataCatalog
from mask2former_rankseg.data.datasets.coco_stuff import (
    COCO_STUFF_CATEGORIES,
    coco_stuff_10k_label_lut,
    coco_stuff_label_lut,
)
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


# ------------------------------------------------------------------------------------------ COCO-Stuff-10k


def test_10k_label_lookup_is_mmsegs_converter_then_reduce_zero_label():
    lut = coco_stuff_10k_label_lut()
    assert lut.shape == (183,)
    # mmseg: clsID_to_trID {1: 1, 11: 11, 13: 12, 90: 80, 92: 81, 182: 171}, then reduce_zero_label (x - 1; 0 -> 255)
    assert [lut[i] for i in (1, 11, 13, 90, 92, 182)] == [0, 10, 11, 79, 80, 170]
    assert lut[0] == 255  # unlabelled
    unused = [12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91]
    assert (lut[unused] == 255).all() and (lut != 255).sum() == 171
    assert sorted(lut[lut != 255].tolist()) == list(range(171))


def test_10k_registration_metadata():
    for name in ("coco_stuff_10k_train_sem_seg", "coco_stuff_10k_test_sem_seg", "coco_2017_train_stuff_10k_sem_seg"):
        meta = MetadataCatalog.get(name)
        assert meta.stuff_classes[0] == "person" and meta.stuff_classes[80] == "banner"
        assert meta.stuff_classes[-1] == "wood"
        assert len(meta.stuff_classes) == len(meta.stuff_colors) == 171 and meta.stuff_colors[0] == [0, 192, 64]
        assert meta.ignore_label == 255 and meta.evaluator_type == "sem_seg"
        assert meta.stuff_dataset_id_to_contiguous_id[13] == 11 and meta.stuff_dataset_id_to_contiguous_id[182] == 170
    assert MetadataCatalog.get("coco_stuff_10k_test_sem_seg").sem_seg_root.endswith(
        "coco/coco_stuff_10k/annotations_detectron2/test")


def _write_10k_release(root, maps):
    """A tiny cocostuff-10k-v1.1 tree under root/coco/coco_stuff_10k: ``maps`` is {split: {stem: S}}; the
    images are random JPEGs of S's size."""
    release = root / "coco" / "coco_stuff_10k"
    for folder in ("images", "annotations", "imageLists"):
        (release / folder).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, stems in maps.items():
        (release / "imageLists" / f"{split}.txt").write_text("".join(f"{stem}\n" for stem in stems))
        for stem, s in stems.items():
            image = rng.integers(0, 256, size=(*s.shape, 3), dtype=np.uint8)
            Image.fromarray(image).save(release / "images" / f"{stem}.jpg")
            scipy.io.savemat(str(release / "annotations" / f"{stem}.mat"), {"S": s, "names": ["unlabeled"]})
    return release


_S_TRAIN_A = np.array([[0, 1, 1, 92],
                       [13, 13, 92, 182],
                       [12, 90, 90, 182]], dtype=np.uint8)  # unlabelled, person, banner, stop sign, wood, unused 12
_S_TRAIN_B = np.full((2, 3), 182, dtype=np.float64)  # MATLAB's default type: doubles
# 91 (hairbrush) has no masks in COCO; road: 149 -> trID 138 -> 137
_S_TEST = np.array([[1, 91], [0, 149]], dtype=np.uint8)


def test_prepare_10k_then_load(tmp_path, monkeypatch, prepare_script):
    release = _write_10k_release(tmp_path, {
        "train": {"COCO_train2014_000000000077": _S_TRAIN_A, "COCO_train2014_000000000078": _S_TRAIN_B},
        "test": {"COCO_train2014_000000000079": _S_TEST},
    })
    script = prepare_script("prepare_coco_stuff_10k_sem_seg")
    assert script.main(["--root", str(tmp_path)]) == 0

    labels = np.asarray(Image.open(release / "annotations_detectron2/train/COCO_train2014_000000000077.png"))
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, [[255, 0, 0, 80],
                                           [11, 11, 80, 170],
                                           [255, 79, 79, 170]])
    labels = np.asarray(Image.open(release / "annotations_detectron2/train/COCO_train2014_000000000078.png"))
    np.testing.assert_array_equal(labels, np.full((2, 3), 170))
    labels = np.asarray(Image.open(release / "annotations_detectron2/test/COCO_train2014_000000000079.png"))
    np.testing.assert_array_equal(labels, [[0, 255], [255, 137]])
    copied = release / "images_detectron2/test/COCO_train2014_000000000079.jpg"
    assert copied.read_bytes() == (release / "images/COCO_train2014_000000000079.jpg").read_bytes()

    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    train = DatasetCatalog.get("coco_stuff_10k_train_sem_seg")
    assert [r["image_id"] for r in train] == ["COCO_train2014_000000000077", "COCO_train2014_000000000078"]
    assert train[0]["file_name"] == str(release / "images_detectron2/train/COCO_train2014_000000000077.jpg")
    assert train[0]["sem_seg_file_name"] == str(
        release / "annotations_detectron2/train/COCO_train2014_000000000077.png")
    (test,) = DatasetCatalog.get("coco_stuff_10k_test_sem_seg")
    assert test["image_id"] == "COCO_train2014_000000000079"
    assert DatasetCatalog.get("coco_2017_test_stuff_10k_sem_seg") == [test]


def test_prepare_10k_rejects_bad_input(tmp_path, prepare_script):
    script = prepare_script("prepare_coco_stuff_10k_sem_seg")
    assert script.main(["--root", str(tmp_path)]) == 1  # no release
    release = _write_10k_release(tmp_path, {"test": {"bad": np.array([[1, 183]], dtype=np.uint8)}})
    with pytest.raises(ValueError, match=r"bad.mat holds values \[183\]"):
        script.prepare(tmp_path, ["test"])
    scipy.io.savemat(str(release / "annotations" / "bad.mat"), {"L": np.zeros((1, 2), np.uint8)})
    with pytest.raises(ValueError, match="bad.mat has no label map 'S'"):
        script.prepare(tmp_path, ["test"])
    scipy.io.savemat(str(release / "annotations" / "bad.mat"), {"S": np.zeros((2, 2), np.uint8)})
    with pytest.raises(ValueError, match=r"bad.mat has size \(2, 2\), its image .*bad.jpg \(1, 2\)"):
        script.prepare(tmp_path, ["test"])
    (release / "annotations" / "bad.mat").write_bytes(b"not a MATLAB file")
    with pytest.raises(ValueError, match="Cannot read .*bad.mat as a MATLAB file"):
        script.prepare(tmp_path, ["test"])
    assert not list((release / "annotations_detectron2" / "test").glob("*"))  # nothing half-written


def test_missing_10k_dataset_names_the_path_and_the_script(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    with pytest.raises(FileNotFoundError,
                       match="coco/coco_stuff_10k/images_detectron2/train.*prepare_coco_stuff_10k_sem_seg"):
        DatasetCatalog.get("coco_stuff_10k_train_sem_seg")

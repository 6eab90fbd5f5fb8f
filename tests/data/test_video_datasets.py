"""YouTube-VIS 2019/2021 and VSPW registration and loaders on tiny hand-made fixtures."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from mask2former_rankseg.data import DatasetCatalog, MetadataCatalog
from mask2former_rankseg.data.datasets.vspw import VSPW_CLASSES, load_vspw, vspw_labels_to_contiguous
from mask2former_rankseg.data.datasets.ytvis import (
    YTVIS_CATEGORIES_2019,
    YTVIS_CATEGORIES_2021,
    load_ytvis_json,
    register_ytvis_instances,
)

H, W = 6, 8


def test_builtin_ytvis_metadata():
    m19, m21 = MetadataCatalog.get("ytvis_2019_train"), MetadataCatalog.get("ytvis_2021_val")
    assert len(m19.thing_classes) == len(m21.thing_classes) == 40 and len(m19.thing_colors) == 40
    assert m19.thing_classes[:3] == ["person", "giant_panda", "lizard"] and m19.thing_colors[0] == [220, 20, 60]
    assert m21.thing_classes[:3] == ["airplane", "bear", "bird"] and m21.thing_classes[-1] == "zebra"
    assert set(m19.thing_classes) != set(m21.thing_classes)  # 2019 has sedan/hand/ape/owl..., 2021 car/bird/whale...
    assert {"sedan", "hand", "ape", "owl"} <= set(m19.thing_classes) - set(m21.thing_classes)
    assert m21.thing_dataset_id_to_contiguous_id == {i: i - 1 for i in range(1, 41)}
    assert m19.evaluator_type == "ytvis" and m19.json_file.endswith("ytvis_2019/train.json")
    assert m19.image_root.endswith("ytvis_2019/train/JPEGImages")
    assert MetadataCatalog.get("ytvis_2019_val").json_file.endswith("ytvis_2019/valid.json")
    assert MetadataCatalog.get("ytvis_2019_val_new").image_root.endswith("ytvis_2019/train/JPEGImages")
    for name in ("ytvis_2019_test", "ytvis_2021_train", "ytvis_2021_test", "ytvis_2019_train_new"):
        assert name in DatasetCatalog
    assert [c[0] for c in YTVIS_CATEGORIES_2019] == [c[0] for c in YTVIS_CATEGORIES_2021] == list(range(1, 41))


def _frame(path, size=(H, W)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), 90, dtype=np.uint8)).save(path)


def _ytvis_fixture(tmp_path, frames=3):
    root = tmp_path / "JPEGImages"
    for t in range(frames):
        _frame(root / "vid" / f"{t:05d}.jpg")
    square = np.zeros((H, W), dtype=np.uint8)
    square[1:4, 2:5] = 1
    compressed = mask_utils.encode(np.asfortranarray(square))
    compressed["counts"] = compressed["counts"].decode("ascii")
    flat = square.flatten(order="F")
    runs = np.diff(np.flatnonzero(np.diff(np.concatenate([[-1], flat, [-1]])) != 0)).tolist()
    uncompressed = {"size": [H, W], "counts": runs if flat[0] == 0 else [0, *runs]}
    polygon = [[0, 0, 3, 0, 3, 2, 0, 2]]  # pixels rows 0-1, cols 0-2
    data = {
        "videos": [{"id": 7, "height": H, "width": W, "length": frames,
                    "file_names": [f"vid/{t:05d}.jpg" for t in range(frames)]},
                   {"id": 3, "height": H, "width": W, "length": 0, "file_names": []}],
        "annotations": [
            {"id": 11, "video_id": 7, "category_id": 6, "iscrowd": 0, "segmentations": [compressed, None, uncompressed],
             "bboxes": [[2, 1, 3, 3], None, [2, 1, 3, 3]], "areas": [9, None, 9]},
            {"id": 12, "video_id": 7, "category_id": 1, "iscrowd": 0, "segmentations": [None, polygon, [[1, 1]]]},
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 6, "name": "sedan"}],
    }
    json_file = tmp_path / "train.json"
    json_file.write_text(json.dumps(data))
    return json_file, root, square


def test_load_ytvis_json(tmp_path, caplog):
    json_file, root, square = _ytvis_fixture(tmp_path)
    mapping = {c[0]: i for i, c in enumerate(YTVIS_CATEGORIES_2019)}
    with caplog.at_level(logging.WARNING):
        (video,) = load_ytvis_json(json_file, root, mapping)
    assert "1 video(s) without frames skipped (video ids 3)" in caplog.text  # the empty video is reported
    assert "1 per-frame segmentation(s) without a valid polygon" in caplog.text
    assert video["video_id"] == 7 and video["length"] == 3 and (video["height"], video["width"]) == (H, W)
    assert video["file_names"] == [str(root / "vid" / f"{t:05d}.jpg") for t in range(3)]
    f0, f1, f2 = video["annotations"]
    assert [a["id"] for a in f0] == [11] and [a["id"] for a in f1] == [12] and [a["id"] for a in f2] == [11]
    assert f0[0]["category_id"] == 5 and f1[0]["category_id"] == 0  # sedan (id 6) -> 5, person (id 1) -> 0
    assert f0[0]["bbox"] == [2.0, 1.0, 3.0, 3.0] and f0[0]["bbox_mode"] == 1
    assert f1[0]["bbox"] == [0, 0, 3, 2]  # computed from the polygon (no 'bboxes' in the JSON)
    assert np.array_equal(mask_utils.decode(f2[0]["segmentation"]), square)  # uncompressed RLE -> compressed
    assert np.array_equal(mask_utils.decode(f0[0]["segmentation"]), square)


def test_ytvis_json_errors(tmp_path):
    json_file, root, _ = _ytvis_fixture(tmp_path)
    mapping = {c[0]: i for i, c in enumerate(YTVIS_CATEGORIES_2019)}
    (root / "vid" / "00001.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"video 7 references frame .*vid/00001\.jpg.*1 of its 3 frames"):
        load_ytvis_json(json_file, root, mapping)
    _frame(root / "vid" / "00001.jpg")
    with pytest.raises(ValueError, match="category id 6"):
        load_ytvis_json(json_file, root, {1: 0})
    data = json.loads(json_file.read_text())
    data["annotations"][0]["segmentations"] = data["annotations"][0]["segmentations"][:2]
    json_file.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"annotation 11 of video 7 needs 'segmentations' with one entry per frame"):
        load_ytvis_json(json_file, root, mapping)
    json_file.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_ytvis_json(json_file, root, mapping)
    with pytest.raises(FileNotFoundError, match="see datasets/README.md"):
        load_ytvis_json(tmp_path / "missing.json", root, mapping)


def test_register_ytvis_follows_paths(tmp_path):
    json_file, root, _ = _ytvis_fixture(tmp_path)
    register_ytvis_instances("_test_ytvis", YTVIS_CATEGORIES_2021, lambda: (root, json_file))
    try:
        (video,) = DatasetCatalog.get("_test_ytvis")
        meta = MetadataCatalog.get("_test_ytvis")
        assert video["annotations"][0][0]["category_id"] == 5 and meta.thing_classes[5] == "cat"  # 2021's id 6
        assert meta.json_file == str(json_file) and meta.thing_classes[0] == "airplane"
    finally:
        DatasetCatalog.remove("_test_ytvis")
        MetadataCatalog.remove("_test_ytvis")


def test_builtin_vspw_metadata():
    meta = MetadataCatalog.get("vspw_val")
    assert len(VSPW_CLASSES) == len(set(VSPW_CLASSES)) == 124 and meta.stuff_classes == list(VSPW_CLASSES)
    assert meta.stuff_classes[0] == "wall" and meta.stuff_classes[-1] == "train"
    assert len(meta.thing_classes) == 81 and meta.thing_classes[0] == "flag"
    assert meta.ignore_label == 255 and meta.evaluator_type == "vspw"
    assert meta.text_file.endswith("VSPW_480p/val.txt") and meta.vspw_root.endswith("VSPW_480p")
    assert "vspw_train" in DatasetCatalog and "vspw_test" in DatasetCatalog


def test_vspw_label_conversion():
    raw = np.array([[0, 1, 124, 125, 255, 7]], dtype=np.uint8)
    assert vspw_labels_to_contiguous(raw).tolist() == [[255, 0, 123, 255, 255, 6]]
    assert vspw_labels_to_contiguous(raw, num_classes=5).tolist() == [[255, 0, 255, 255, 255, 255]]


def _vspw_fixture(tmp_path, lengths=(("a", 5), ("b", 2))):
    for video, n in lengths:
        for t in range(n):
            _frame(tmp_path / "data" / video / "origin" / f"{t:03d}.jpg")
            label = np.full((H, W), t + 1, dtype=np.uint8)
            (tmp_path / "data" / video / "mask").mkdir(parents=True, exist_ok=True)
            Image.fromarray(label).save(tmp_path / "data" / video / "mask" / f"{t:03d}.png")
    (tmp_path / "val.txt").write_text("".join(f"{v}\n" for v, _ in lengths) + "\n")


def test_load_vspw(tmp_path, caplog):
    _vspw_fixture(tmp_path)
    _frame(tmp_path / "data" / "a" / "origin" / "999.jpg")  # a frame without a label map is left out
    (tmp_path / "data" / "empty" / "origin").mkdir(parents=True)
    (tmp_path / "val.txt").write_text("a\nb\nempty\n")
    with caplog.at_level(logging.WARNING):
        whole = load_vspw(tmp_path, tmp_path / "val.txt")
        clips = load_vspw(tmp_path, tmp_path / "val.txt", clip_length=2)
    assert "6 frames and 5 label maps" in caplog.text and "1 video(s) without frames skipped: empty" in caplog.text
    assert [(d["video_id"], d["length"], d["frame_offset"], d["video_length"]) for d in whole] == [
        ("a", 5, 0, 5), ("b", 2, 0, 2)]
    assert [(d["video_id"], d["length"], d["frame_offset"]) for d in clips] == [
        ("a", 2, 0), ("a", 2, 2), ("a", 1, 4), ("b", 2, 0)]
    assert clips[1]["file_names"] == [str(tmp_path / "data" / "a" / "origin" / f"{t:03d}.jpg") for t in (2, 3)]
    assert clips[1]["sem_seg_file_names"] == [str(tmp_path / "data" / "a" / "mask" / f"{t:03d}.png") for t in (2, 3)]
    assert (whole[0]["height"], whole[0]["width"]) == (H, W)


def test_vspw_errors_and_unlabelled_videos(tmp_path):
    _vspw_fixture(tmp_path)
    with pytest.raises(FileNotFoundError, match="VSPW split list .*train.txt not found"):
        load_vspw(tmp_path, tmp_path / "train.txt")
    (tmp_path / "val.txt").write_text("a\nmissing\n")
    with pytest.raises(FileNotFoundError, match=r"lists video 'missing' but .*missing/origin does not exist"):
        load_vspw(tmp_path, tmp_path / "val.txt")
    for p in (tmp_path / "data" / "b" / "mask").iterdir():
        p.unlink()
    (tmp_path / "data" / "b" / "mask").rmdir()
    (tmp_path / "test.txt").write_text("b\n")
    (video,) = load_vspw(tmp_path, tmp_path / "test.txt")  # a test video: frames, no label maps
    assert video["length"] == 2 and "sem_seg_file_names" not in video

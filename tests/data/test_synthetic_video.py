"""Synthetic video datasets: YouTube-VIS format and VSPW layout, deterministic, moving and occluding objects,
registered and generated on first use, loadable and mappable."""

from __future__ import annotations

import functools
import json
import logging

import numpy as np
import pytest
from PIL import Image

from mask2former_rankseg.data import DatasetCatalog, MetadataCatalog, synthetic
from mask2former_rankseg.data.datasets import synthetic as synthetic_registration
from mask2former_rankseg.data.mappers import VSPWDatasetMapper, YTVISDatasetMapper
from mask2former_rankseg.data.synthetic import video_categories
from mask2former_rankseg.data.synthetic.__main__ import main as synthetic_main

SIZE = 48
ARGS = ["--num-train", "3", "--num-val", "2", "--size", str(SIZE), "--seed", "5"]


@pytest.fixture(scope="module")
def ytvis(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic") / "ytvis"
    assert synthetic_main(["--task", "video", "--out", str(out), *ARGS, "--num-frames", "6"]) == 0
    return out


@pytest.fixture(scope="module")
def vspw(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic") / "vspw"
    assert synthetic_main(["--task", "vspw", "--out", str(out), *ARGS, "--num-frames", "7"]) == 0
    return out


def test_categories():
    cats = video_categories()
    assert len(cats) == 48 and len({c.name for c in cats}) == 48 and cats[0].name == "red-disc"
    assert {c.shape for c in cats} == {"disc", "square", "triangle", "cross"}


def test_ytvis_files(ytvis):
    data = json.loads((ytvis / "valid.json").read_text())
    assert len(data["videos"]) == 2 and len(data["categories"]) == 48 and data["categories"][0]["id"] == 1
    video = data["videos"][0]
    assert video["length"] == 6 and video["file_names"][1] == "valid_00000/00005.jpg"
    frame = np.asarray(Image.open(ytvis / "valid" / "JPEGImages" / video["file_names"][0]))
    assert frame.shape == (SIZE, SIZE, 3)
    train = json.loads((ytvis / "train.json").read_text())
    per_video = {}
    for ann in train["annotations"]:
        assert len(ann["segmentations"]) == 6 and any(ann["segmentations"])
        for segm, area in zip(ann["segmentations"], ann["areas"]):
            assert (segm is None) == (area is None)
        per_video.setdefault(ann["video_id"], []).append(ann)
    assert all(2 <= len(v) <= 4 for v in per_video.values())  # a few objects per video
    assert sorted(a["id"] for a in train["annotations"]) == list(range(1, len(train["annotations"]) + 1))
    info = json.loads((ytvis / "categories.json").read_text())
    assert info["task"] == "video" and info["num_videos"] == {"train": 3, "val": 2} and info["num_frames"] == 6


def test_vspw_files(vspw):
    assert (vspw / "train.txt").read_text().split() == ["train_00000", "train_00001", "train_00002"]
    videos = (vspw / "val.txt").read_text().split()
    masks = [np.asarray(Image.open(vspw / "data" / videos[0] / "mask" / f"{t:05d}.png")) for t in range(7)]
    assert masks[0].dtype == np.uint8 and masks[0].shape == (SIZE, SIZE)
    values = set(np.unique(np.stack(masks)).tolist())
    assert 0 in values and 3 <= len(values) <= 5 and max(values) <= 48  # background + 2-4 categories (+1)
    assert len(list((vspw / "data" / videos[1] / "origin").glob("*.jpg"))) == 7


def test_scenes_move_and_occlude():
    cats = video_categories()
    moved = occluded = partial = 0
    for i in range(20):
        scene = synthetic.render_video_scene(np.random.default_rng([1, i]), 64, 10, cats)
        for k in range(len(scene.category_ids)):
            visible = (scene.owner == k).reshape(10, -1).sum(1)
            ys, xs = np.nonzero(scene.owner[0] == k)
            ys2, xs2 = np.nonzero(scene.owner[-1] == k)
            if len(xs) and len(xs2) and abs(xs.mean() - xs2.mean()) + abs(ys.mean() - ys2.mean()) > 4:
                moved += 1
            partial += int((visible == 0).any() and visible.any())
            occluded += int(0 < visible.min() < visible.max() * 0.8)
        assert len(set(scene.category_ids)) == len(scene.category_ids)  # distinct without allow_repeats
    assert moved > 20 and occluded > 3 and partial > 3


def test_generation_is_deterministic(ytvis, vspw, tmp_path):
    again = tmp_path / "again"
    assert synthetic_main(["--task", "video", "--out", str(again), *ARGS, "--num-frames", "6"]) == 0
    assert (again / "train.json").read_bytes() == (ytvis / "train.json").read_bytes()
    name = "valid/JPEGImages/valid_00001/00010.jpg"
    assert (again / name).read_bytes() == (ytvis / name).read_bytes()
    workers = synthetic.generate_vspw_dataset(tmp_path / "two", num_train=3, num_val=2, num_frames=7,
                                                    size=SIZE, seed=5, num_workers=2)
    for name in ("data/val_00001/mask/00004.png", "data/train_00002/origin/00006.jpg"):
        assert (workers / name).read_bytes() == (vspw / name).read_bytes()


def test_cli_errors(tmp_path, capsys):
    assert synthetic_main(["--task", "semantic", "--out", str(tmp_path / "s"), "--num-frames", "3"]) == 2
    assert "--num-frames is for the video tasks" in capsys.readouterr().err
    assert synthetic_main(["--task", "vspw", "--out", str(tmp_path / "v"), "--num-frames", "0"]) == 2
    assert "num_frames=0" in capsys.readouterr().err and not (tmp_path / "v").exists()


def test_registration_generation_on_first_use_and_mappers(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    monkeypatch.setattr(synthetic_registration, "generate_ytvis_dataset", functools.partial(
        synthetic.generate_ytvis_dataset, num_train=2, num_val=2, num_frames=4, size=SIZE))
    monkeypatch.setattr(synthetic_registration, "generate_vspw_dataset", functools.partial(
        synthetic.generate_vspw_dataset, num_train=2, num_val=2, num_frames=23, size=SIZE))
    meta = MetadataCatalog.get("synthetic_ytvis_val")
    assert meta.evaluator_type == "ytvis" and len(meta.thing_classes) == 48 and meta.thing_classes[1] == "orange-disc"
    assert MetadataCatalog.get("synthetic_vspw_train").stuff_classes[47] == "black-cross"
    assert MetadataCatalog.get("synthetic_vspw_train").evaluator_type == "vspw"
    with caplog.at_level(logging.WARNING):
        videos = DatasetCatalog.get("synthetic_ytvis_train")
        clips = DatasetCatalog.get("synthetic_vspw_val")
    assert "generating it now" in caplog.text and (tmp_path / "synthetic" / "ytvis" / "categories.json").is_file()
    assert MetadataCatalog.get("synthetic_ytvis_train").json_file == str(tmp_path / "synthetic/ytvis/train.json")
    assert len(videos) == 2 and videos[0]["length"] == 4 and videos[0]["video_id"] == 1
    assert [(c["video_id"], c["length"], c["frame_offset"]) for c in clips] == [
        ("val_00000", 20, 0), ("val_00000", 3, 20), ("val_00001", 20, 0), ("val_00001", 3, 20)]

    clip = YTVISDatasetMapper(True, augmentations=[], image_format="RGB", sampling_frame_num=2)(videos[0])
    assert len(clip["image"]) == 2 and len(clip["instances"]) == 2
    assert len(clip["instances"][0]) == len(clip["instances"][1]) >= 1
    assert (clip["instances"][0].gt_ids >= 0).any()
    train = DatasetCatalog.get("synthetic_vspw_train")
    out = VSPWDatasetMapper(True, augmentations=[], image_format="RGB", num_classes=48, sampling_frame_num=3)(train[1])
    assert len(out["sem_seg"]) == 3 and 1 <= len(out["instances"][0]) <= 4
    assert set(out["sem_seg"][0].unique().tolist()) <= {*out["instances"][0].gt_classes.tolist(), 255}

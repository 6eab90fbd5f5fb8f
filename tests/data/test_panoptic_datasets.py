"""COCO-panoptic-format datasets: metadata with upstream's names, loading a tiny on-disk fixture, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import REPO
from PIL import Image

from mask2former_rankseg.data import DatasetCatalog, MetadataCatalog
from mask2former_rankseg.data.datasets.panoptic import (
    ADE20K_PANOPTIC_CATEGORIES,
    COCO_PANOPTIC_CATEGORIES,
    load_coco_panoptic_json,
    panoptic_metadata,
    register_panoptic_dataset,
)
from mask2former_rankseg.evaluation.panoptic import id2rgb


def test_builtin_metadata():
    coco = MetadataCatalog.get("coco_2017_val_panoptic_with_sem_seg")
    assert len(COCO_PANOPTIC_CATEGORIES) == 133 and len(coco.thing_classes) == 80 and len(coco.stuff_classes) == 133
    assert coco.thing_dataset_id_to_contiguous_id[1] == 0 and coco.thing_dataset_id_to_contiguous_id[90] == 79
    assert coco.stuff_dataset_id_to_contiguous_id[200] == 132 and coco.stuff_classes[132] == "rug-merged"
    assert coco.panoptic_json.endswith("coco/annotations/panoptic_val2017.json")
    assert coco.panoptic_root.endswith("coco/panoptic_val2017")
    assert coco.sem_seg_root.endswith("panoptic_semseg_val2017")
    assert coco.json_file.endswith("instances_val2017.json") and coco.ignore_label == 255 and coco.label_divisor == 1000
    assert coco.evaluator_type == "coco_panoptic_seg"
    assert MetadataCatalog.get("coco_2017_train_panoptic").sem_seg_root is None
    ade = MetadataCatalog.get("ade20k_panoptic_val")
    assert len(ADE20K_PANOPTIC_CATEGORIES) == 150 and len(ade.thing_classes) == 100
    assert ade.stuff_classes[:3] == ["wall", "building", "sky"] and ade.evaluator_type == "ade20k_panoptic_seg"
    assert ade.panoptic_json.endswith("ADEChallengeData2016/ade20k_panoptic_val.json")
    assert MetadataCatalog.get("ade20k_panoptic_val").sem_seg_root.endswith("annotations_detectron2/validation")
    for name in ("coco_2017_train_panoptic", "coco_2017_val_panoptic", "coco_2017_train_panoptic_with_sem_seg",
                 "ade20k_panoptic_train", "ade20k_panoptic_val"):
        assert name in DatasetCatalog


CATEGORIES = ((1, "person", 1, (220, 20, 60)), (7, "sky", 0, (70, 130, 180)))


def _fixture(tmp_path, *, missing_png=False, category=7):
    images, pan, sem = tmp_path / "images", tmp_path / "panoptic", tmp_path / "semseg"
    for d in (images, pan, sem):
        d.mkdir()
    ids = np.zeros((4, 6), dtype=np.int64)
    ids[:, :2], ids[:, 2:] = 3, 4
    Image.fromarray(np.zeros((4, 6, 3), dtype=np.uint8)).save(images / "000001.jpg")
    if not missing_png:
        Image.fromarray(id2rgb(ids)).save(pan / "000001.png")
    Image.fromarray(np.zeros((4, 6), dtype=np.uint8)).save(sem / "000001.png")
    annotation = {"image_id": 1, "file_name": "000001.png", "segments_info": [
        {"id": 3, "category_id": 1, "iscrowd": 0, "area": 8, "bbox": [0, 0, 2, 4]},
        {"id": 4, "category_id": category, "iscrowd": 0, "area": 16, "bbox": [2, 0, 4, 4]}]}
    json_file = tmp_path / "panoptic.json"
    json_file.write_text(json.dumps({"annotations": [annotation], "images": [], "categories": []}))
    return json_file, images, pan, sem


def test_load_fixture_with_contiguous_ids(tmp_path):
    json_file, images, pan, sem = _fixture(tmp_path)
    register_panoptic_dataset("_test_panoptic_fixture", CATEGORIES, (images, pan, json_file, sem, None))
    (record,) = DatasetCatalog.get("_test_panoptic_fixture")
    assert record["file_name"] == str(images / "000001.jpg") and record["image_id"] == 1
    assert record["pan_seg_file_name"] == str(pan / "000001.png")
    assert record["sem_seg_file_name"] == str(sem / "000001.png")
    assert [(s["id"], s["category_id"], s["isthing"]) for s in record["segments_info"]] == [(3, 0, True), (4, 1, False)]
    meta = MetadataCatalog.get("_test_panoptic_fixture")
    assert meta.thing_dataset_id_to_contiguous_id == {1: 0} and meta.stuff_dataset_id_to_contiguous_id == {1: 0, 7: 1}
    assert meta.thing_classes == ["person"] and meta.stuff_classes == ["person", "sky"]


def test_missing_file_and_unknown_category_are_named(tmp_path):
    json_file, images, pan, sem = _fixture(tmp_path, missing_png=True)
    meta = panoptic_metadata(CATEGORIES)
    with pytest.raises(FileNotFoundError, match=r"panoptic\.json references .*panoptic/000001\.png"):
        load_coco_panoptic_json(json_file, images, pan, sem, meta)
    other = tmp_path / "other"
    other.mkdir()
    json_file, images, pan, sem = _fixture(other, category=99)
    with pytest.raises(ValueError, match="category id 99"):
        load_coco_panoptic_json(json_file, images, pan, sem, meta)
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_coco_panoptic_json(tmp_path / "nope.json", images, pan, sem, meta)


def _mapper(augmentations=(), size_divisibility=8):
    from mask2former_rankseg.data import MaskFormerPanopticDatasetMapper

    return MaskFormerPanopticDatasetMapper(True, augmentations=list(augmentations), image_format="RGB",
                                           ignore_label=255, size_divisibility=size_divisibility)


def _fixture_record(tmp_path, crowd=False, extra_id=False):
    json_file, images, pan, sem = _fixture(tmp_path)
    if crowd or extra_id:
        ids = np.zeros((4, 6), dtype=np.int64)
        ids[:, :2], ids[:, 2:] = 3, 4
        if extra_id:
            ids[0, 0] = 9  # an id the JSON does not list
        Image.fromarray(id2rgb(ids)).save(pan / "000001.png")
    (record,) = load_coco_panoptic_json(json_file, images, pan, sem, panoptic_metadata(CATEGORIES))
    if crowd:
        record["segments_info"][0]["iscrowd"] = 1
    return record


def test_panoptic_mapper_builds_one_mask_per_segment(tmp_path):
    out = _mapper()(_fixture_record(tmp_path))
    assert out["image"].shape == (3, 8, 8) and out["image"].dtype.is_floating_point is False
    inst = out["instances"]
    assert inst.gt_classes.tolist() == [0, 1]  # person (thing), sky (stuff), contiguous ids
    assert inst.gt_masks.shape == (2, 8, 8) and inst.gt_masks.dtype == torch.bool
    assert int(inst.gt_masks[0].sum()) == 8 and bool(inst.gt_masks[0, :4, :2].all())
    assert int(inst.gt_masks[1].sum()) == 16 and not inst.gt_masks[:, 4:, :].any()  # padding is void
    assert out["sem_seg"].shape == (8, 8) and int(out["sem_seg"][5, 5]) == 255  # padded with ignore
    assert "pan_seg_file_name" not in out and "sem_seg_file_name" not in out


def test_panoptic_mapper_flips_masks_with_the_image(tmp_path):
    from mask2former_rankseg.data.transforms import HFlipTransform

    out = _mapper([HFlipTransform(6)], size_divisibility=0)(_fixture_record(tmp_path))
    assert bool(out["instances"].gt_masks[0, :, 4:].all()) and not out["instances"].gt_masks[0, :, :4].any()


def test_panoptic_mapper_skips_crowd_and_rejects_unlisted_ids(tmp_path):
    out = _mapper()(_fixture_record(tmp_path, crowd=True))
    assert out["instances"].gt_classes.tolist() == [1]  # the crowd person is left out, as upstream
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(ValueError, match=r"000001\.png .*segment ids \[9\] that its segments_info does not list"):
        _mapper()(_fixture_record(other, extra_id=True))


def test_builtin_paths_follow_detectron2_datasets_at_load_time(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "coco/annotations/panoptic_val2017.json")):
        DatasetCatalog.get("coco_2017_val_panoptic")
    assert MetadataCatalog.get("coco_2017_val_panoptic").panoptic_root == str(tmp_path / "coco/panoptic_val2017")


def test_prepare_coco_semantic_from_panoptic(tmp_path, capsys):
    import importlib.util

    path = REPO / "datasets" / "prepare_coco_semantic_annos_from_panoptic_annos.py"
    spec = importlib.util.spec_from_file_location("prepare_coco_sem", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)

    coco = tmp_path / "coco"
    (coco / "annotations").mkdir(parents=True)
    (coco / "panoptic_val2017").mkdir()
    ids = np.zeros((4, 6), dtype=np.int64)
    ids[:, :2], ids[:, 2:4] = 5, 6  # cols 4-5 void
    Image.fromarray(id2rgb(ids)).save(coco / "panoptic_val2017" / "000000000139.png")
    segments = [{"id": 5, "category_id": 1, "iscrowd": 0}, {"id": 6, "category_id": 200, "iscrowd": 1}]
    (coco / "annotations" / "panoptic_val2017.json").write_text(json.dumps(
        {"annotations": [{"image_id": 139, "file_name": "000000000139.png", "segments_info": segments}]}))
    assert tool.main(["--root", str(tmp_path), "--splits", "val2017"]) == 0
    out = np.array(Image.open(coco / "panoptic_semseg_val2017" / "000000000139.png"))
    # person (dataset id 1) -> 0; rug-merged (200) -> 132, crowd included as upstream; void -> 255
    assert out.dtype == np.uint8 and out[:, :2].tolist() == [[0, 0]] * 4 and (out[:, 2:4] == 132).all()
    assert (out[:, 4:] == 255).all()
    assert tool.main(["--root", str(tmp_path / "nowhere"), "--splits", "val2017"]) == 1
    assert "panoptic_val2017.json" in capsys.readouterr().err


def test_resize_scale_and_fixed_size_crop():
    from mask2former_rankseg.data.transforms import FixedSizeCrop, ResizeScale

    image = np.zeros((40, 60, 3), dtype=np.uint8)
    t = ResizeScale(0.5, 0.5, 100, 100).get_transform(image)  # box 50x50: factor min(50/40, 50/60) = 5/6
    assert (t.new_h, t.new_w) == (33, 50)
    crop = FixedSizeCrop((32, 32)).get_transform(np.zeros((33, 50, 3), dtype=np.uint8))
    assert (crop.h, crop.w) == (32, 32) and 0 <= crop.x0 <= 18 and 0 <= crop.y0 <= 1
    small = FixedSizeCrop((64, 64)).get_transform(image)  # smaller than the crop: whole image, padded later
    assert (small.x0, small.y0, small.w, small.h) == (0, 0, 60, 40)
    with pytest.raises(ValueError, match="min_scale"):
        ResizeScale(0, 1, 10, 10)


def test_coco_panoptic_lsj_mapper_gives_fixed_size_inputs(tmp_path):
    from mask2former_rankseg.config import get_cfg
    from mask2former_rankseg.data.mappers import TRAIN_MAPPERS

    cfg = get_cfg()
    cfg.INPUT.IMAGE_SIZE, cfg.INPUT.MIN_SCALE, cfg.INPUT.MAX_SCALE = 16, 0.5, 2.0
    mapper = TRAIN_MAPPERS["coco_panoptic_lsj"].from_config(cfg, True)
    assert [type(a).__name__ for a in mapper.augmentations] == ["RandomFlip", "ResizeScale", "FixedSizeCrop"]
    record = _fixture_record(tmp_path)
    for seed in range(5):
        np.random.seed(seed)
        out = mapper(record)
        assert out["image"].shape == (3, 16, 16)
        inst = out["instances"]
        assert inst.gt_masks.shape[1:] == (16, 16) and set(inst.gt_classes.tolist()) <= {0, 1}
        assert int(inst.gt_masks.sum()) <= 16 * 16

"""Synthetic panoptic dataset: COCO panoptic format, things and stuff, loadable, mappable, and scoring PQ 100
against itself."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from mask2former_rankseg.data.datasets.panoptic import load_coco_panoptic_json, panoptic_metadata
from mask2former_rankseg.data.mappers import MaskFormerPanopticDatasetMapper
from mask2former_rankseg.data.synthetic import panoptic_categories
from mask2former_rankseg.data.synthetic.__main__ import main as synthetic_main
from mask2former_rankseg.evaluation.panoptic import COCOPanopticEvaluator
from mask2former_rankseg.utils.panoptic import rgb2id


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic") / "panoptic"
    assert synthetic_main(["--task", "panoptic", "--out", str(out), "--num-train", "4", "--num-val", "3",
                           "--size", "64", "--seed", "3"]) == 0
    return out


def _categories():
    return tuple((c["id"], c["name"], c["isthing"], tuple(c["color"])) for c in panoptic_categories())


def test_categories_and_files(dataset):
    cats = panoptic_categories()
    assert len(cats) == 116 and sum(c["isthing"] for c in cats) == 108
    assert [c["id"] for c in cats] == list(range(1, 117))
    data = json.loads((dataset / "panoptic_val.json").read_text())
    assert len(data["images"]) == 3 and len(data["annotations"]) == 3 and len(data["categories"]) == 116
    for ann in data["annotations"]:
        ids = rgb2id(np.array(Image.open(dataset / "panoptic" / "validation" / ann["file_name"])))
        listed = {s["id"] for s in ann["segments_info"]}
        assert set(np.unique(ids).tolist()) == listed  # no void, every segment listed
        things = [s for s in ann["segments_info"] if s["category_id"] <= 108]
        stuff = [s for s in ann["segments_info"] if s["category_id"] > 108]
        assert len(things) >= 2 and 1 <= len(stuff) <= 2
        for s in ann["segments_info"]:
            assert s["area"] == int((ids == s["id"]).sum())
    info = json.loads((dataset / "categories.json").read_text())
    assert info["task"] == "panoptic" and info["num_images"] == {"train": 4, "val": 3}


def test_generation_is_deterministic(dataset, tmp_path):
    again = tmp_path / "again"
    assert synthetic_main(["--task", "panoptic", "--out", str(again), "--num-train", "4", "--num-val", "3",
                           "--size", "64", "--seed", "3"]) == 0
    for sub in ("images/training/synthetic_train_00002.png", "panoptic/validation/synthetic_val_00001.png"):
        assert (again / sub).read_bytes() == (dataset / sub).read_bytes()


def test_loads_maps_and_scores_pq_100_against_itself(dataset):
    meta = panoptic_metadata(_categories())
    records = load_coco_panoptic_json(dataset / "panoptic_val.json", dataset / "images" / "validation",
                                      dataset / "panoptic" / "validation", dataset / "panoptic_semseg" / "validation",
                                      meta, image_ext="png")
    assert len(records) == 3 and records[0]["file_name"].endswith(".png")
    mapper = MaskFormerPanopticDatasetMapper(True, augmentations=[], image_format="RGB", ignore_label=255,
                                             size_divisibility=32)
    out = mapper(records[0])
    assert out["image"].shape == (3, 64, 64) and len(out["instances"]) == len(records[0]["segments_info"])
    assert out["sem_seg"].max() < 116

    evaluator = COCOPanopticEvaluator(panoptic_json=str(dataset / "panoptic_val.json"),
                                      panoptic_root=str(dataset / "panoptic" / "validation"), distributed=False,
                                      thing_dataset_id_to_contiguous_id=meta["thing_dataset_id_to_contiguous_id"],
                                      stuff_dataset_id_to_contiguous_id=meta["stuff_dataset_id_to_contiguous_id"])
    for record in records:
        ids = rgb2id(np.array(Image.open(record["pan_seg_file_name"])))
        segments = [{"id": s["id"], "category_id": s["category_id"], "isthing": s["isthing"]}
                    for s in record["segments_info"]]
        evaluator.process([record], [{"panoptic_seg": (torch.as_tensor(ids), segments)}])
    result = evaluator.evaluate()["panoptic_seg"]
    assert result["PQ"] == pytest.approx(100.0) and result["PQ_th"] == pytest.approx(100.0)
    assert result["PQ_st"] == pytest.approx(100.0)

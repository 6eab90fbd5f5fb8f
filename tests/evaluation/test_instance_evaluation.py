"""COCO mask AP on hand-built cases with known answers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from mask2former_rankseg.evaluation.instance import InstanceSegEvaluator
from mask2former_rankseg.structures import Instances

H, W = 10, 10


def _box_mask(r0, r1, c0, c1):
    m = np.zeros((H, W), dtype=np.uint8)
    m[r0:r1, c0:c1] = 1
    return m


GT = {1: [(1, _box_mask(0, 4, 0, 4))], 2: [(2, _box_mask(5, 9, 5, 9))]}  # image 1: a cat (id 1); image 2: a dog


@pytest.fixture()
def json_file(tmp_path):
    annotations = []
    for image_id, objects in GT.items():
        for category_id, mask in objects:
            rle = mask_utils.encode(np.asfortranarray(mask))
            rle["counts"] = rle["counts"].decode("ascii")
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category_id,
                                "segmentation": rle, "area": int(mask.sum()), "bbox": [0, 0, 4, 4], "iscrowd": 0})
    data = {"images": [{"id": i, "height": H, "width": W, "file_name": f"{i}.jpg"} for i in GT],
            "annotations": annotations,
            "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]}
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return str(path)


def _evaluate(json_file, predictions, **kwargs):
    evaluator = InstanceSegEvaluator(json_file=json_file, thing_dataset_id_to_contiguous_id={1: 0, 2: 1},
                                     distributed=False, **kwargs)
    evaluator.reset()
    for image_id, objects in predictions.items():
        masks = torch.tensor(np.stack([m for _, m, _ in objects]) if objects else np.zeros((0, H, W)))
        inst = Instances((H, W), pred_masks=masks.float(), scores=torch.tensor([s for _, _, s in objects]),
                         pred_classes=torch.tensor([c for c, _, _ in objects], dtype=torch.long))
        evaluator.process([{"image_id": image_id}], [{"instances": inst}])
    return evaluator.evaluate()["segm"]


def test_perfect_masks_give_ap_100(json_file, tmp_path):
    r = _evaluate(json_file, {1: [(0, GT[1][0][1], 0.9)], 2: [(1, GT[2][0][1], 0.8)]}, output_dir=str(tmp_path))
    assert r["AP"] == pytest.approx(100.0) and r["AP50"] == pytest.approx(100.0) and r["AP75"] == pytest.approx(100.0)
    assert r["APs"] == pytest.approx(100.0) and math.isnan(r["APm"]) and math.isnan(r["APl"])  # all objects small
    assert r["AP-cat"] == pytest.approx(100.0) and r["AP-dog"] == pytest.approx(100.0)
    assert len(json.loads((tmp_path / "coco_instances_results.json").read_text())) == 2


def test_known_iou_gives_known_ap(json_file):
    # cat predicted as rows 0-3, cols 0-5 (24 px) vs ground truth 16 px: IoU 16/24 = 0.667, a match at the
    # IoU thresholds 0.50, 0.55, 0.60, 0.65 (4 of 10) -> AP 40 for cats; dogs perfect -> AP 100
    r = _evaluate(json_file, {1: [(0, _box_mask(0, 4, 0, 6), 0.9)], 2: [(1, GT[2][0][1], 0.8)]})
    assert r["AP-cat"] == pytest.approx(40.0) and r["AP-dog"] == pytest.approx(100.0)
    assert r["AP"] == pytest.approx(70.0) and r["AP50"] == pytest.approx(100.0) and r["AP75"] == pytest.approx(50.0)


def test_a_higher_scored_false_positive_lowers_ap(json_file):
    # a dog predicted on image 1 with a higher score than the real dog: at recall 1, precision 1/2 -> AP-dog 50
    r = _evaluate(json_file, {1: [(0, GT[1][0][1], 0.9), (1, _box_mask(6, 9, 0, 3), 0.95)],
                              2: [(1, GT[2][0][1], 0.8)]})
    assert r["AP-cat"] == pytest.approx(100.0) and r["AP-dog"] == pytest.approx(50.0, abs=0.6)


def test_no_predictions_and_bad_classes(json_file):
    assert _evaluate(json_file, {})["AP"] == 0.0
    with pytest.raises(ValueError, match="class 5 is not a thing class"):
        _evaluate(json_file, {1: [(5, GT[1][0][1], 0.9)]})

"""Panoptic quality on hand-built ground truth and predictions with known answers (panopticapi's protocol)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from mask2former_rankseg.evaluation.panoptic import COCOPanopticEvaluator, id2rgb, rgb2id

CATEGORIES = [{"id": 1, "name": "person", "isthing": 1}, {"id": 2, "name": "car", "isthing": 1},
              {"id": 3, "name": "sky", "isthing": 0}]
THINGS = {1: 0, 2: 1}
STUFF = {1: 0, 2: 1, 3: 2}  # Mask2Former's convention: every category has a contiguous "stuff" id
PERSON, CAR, SKY = 0, 1, 2  # contiguous ids


def _gt_maps():
    """Image 1: person cols 0-1 (id 10), sky cols 2-5 (id 11). Image 2: car rows 0-2 cols 0-2 (id 20), sky rows
    0-2 cols 3-5 (id 21), row 3 void."""
    a = np.zeros((4, 6), dtype=np.int64)
    a[:, :2], a[:, 2:] = 10, 11
    b = np.zeros((4, 6), dtype=np.int64)
    b[:3, :3], b[:3, 3:] = 20, 21
    return {1: (a, {10: 1, 11: 3}), 2: (b, {20: 2, 21: 3})}


@pytest.fixture()
def dataset(tmp_path):
    root = tmp_path / "panoptic_val"
    root.mkdir()
    annotations, images = [], []
    for image_id, (ids, categories) in _gt_maps().items():
        Image.fromarray(id2rgb(ids)).save(root / f"{image_id:03d}.png")
        segments = [{"id": i, "category_id": c, "iscrowd": 0, "area": int((ids == i).sum()), "bbox": [0, 0, 1, 1]}
                    for i, c in categories.items()]
        annotations.append({"image_id": image_id, "file_name": f"{image_id:03d}.png", "segments_info": segments})
        images.append({"id": image_id, "file_name": f"{image_id:03d}.jpg", "height": 4, "width": 6})
    gt_json = tmp_path / "panoptic_val.json"
    gt_json.write_text(json.dumps({"images": images, "annotations": annotations, "categories": CATEGORIES}))
    return str(gt_json), str(root)


def _evaluate(dataset, predictions, output_dir=None):
    gt_json, gt_root = dataset
    evaluator = COCOPanopticEvaluator(panoptic_json=gt_json, panoptic_root=gt_root, distributed=False,
                                      output_dir=output_dir, thing_dataset_id_to_contiguous_id=THINGS,
                                      stuff_dataset_id_to_contiguous_id=STUFF)
    evaluator.reset()
    for image_id, (seg, segments) in predictions.items():
        evaluator.process([{"image_id": image_id, "file_name": f"/data/{image_id:03d}.jpg"}],
                          [{"panoptic_seg": (torch.as_tensor(seg, dtype=torch.int32), segments)}])
    return evaluator.evaluate()["panoptic_seg"]


def _segment(i, category):
    return {"id": i, "category_id": category, "isthing": category in (PERSON, CAR)}


def _perfect():
    gt = _gt_maps()
    a, b = gt[1][0].copy(), gt[2][0].copy()
    return {1: (a, [_segment(10, PERSON), _segment(11, SKY)]), 2: (b, [_segment(20, CAR), _segment(21, SKY)])}


def test_perfect_prediction(dataset, tmp_path):
    r = _evaluate(dataset, _perfect(), output_dir=str(tmp_path / "out"))
    for key in ("PQ", "SQ", "RQ", "PQ_th", "PQ_st", "PQ-person", "PQ-car", "PQ-sky"):
        assert r[key] == pytest.approx(100.0), key
    written = json.loads((tmp_path / "out" / "panoptic_predictions.json").read_text())
    assert [a["file_name"] for a in written["annotations"]] == ["001.png", "002.png"]
    assert {s["category_id"] for s in written["annotations"][1]["segments_info"]} == {2, 3}  # dataset ids
    png = np.array(Image.open(tmp_path / "out" / "panoptic_predictions" / "002.png"))
    assert np.array_equal(rgb2id(png), _gt_maps()[2][0])
    assert (tmp_path / "out" / "panoptic_evaluation.json").is_file()


def test_one_missed_segment(dataset):
    predictions = _perfect()
    seg, segments = predictions[2]
    seg = np.where(seg == 20, 0, seg)  # the car is predicted as void
    predictions[2] = (seg, [s for s in segments if s["id"] != 20])
    r = _evaluate(dataset, predictions)
    # car: TP 0, FN 1 -> PQ 0; person and sky perfect
    assert r["PQ-car"] == pytest.approx(0.0)
    assert r["PQ"] == pytest.approx(100 * 2 / 3) and r["PQ_th"] == pytest.approx(50.0) and r["PQ_st"] == 100.0
    assert r["RQ"] == pytest.approx(100 * 2 / 3) and r["SQ"] == pytest.approx(100 * 2 / 3)


def test_one_false_positive(dataset):
    predictions = _perfect()
    seg, segments = predictions[1]
    seg = seg.copy()
    seg[:, 5] = 12  # a car in column 5, carved out of the sky: sky IoU 12/16 = 0.75 (still a match)
    predictions[1] = (seg, segments + [_segment(12, CAR)])
    r = _evaluate(dataset, predictions)
    # car: TP 1 (IoU 1), FP 1 -> RQ 1/1.5, SQ 1; sky: TP 2 with IoU 0.75 and 1 -> SQ 0.875, RQ 1
    assert r["PQ-car"] == pytest.approx(100 / 1.5)
    assert r["PQ-sky"] == pytest.approx(87.5)
    assert r["PQ"] == pytest.approx(100 * (1 + 1 / 1.5 + 0.875) / 3)
    assert r["PQ_st"] == pytest.approx(87.5) and r["PQ_th"] == pytest.approx(100 * (1 + 1 / 1.5) / 2)


def test_prediction_in_a_void_region_is_ignored(dataset):
    predictions = _perfect()
    seg, segments = predictions[2]
    seg = seg.copy()
    seg[3, :] = 30  # a person on the ground truth's void row: not a false positive
    seg[3, :3] = 20  # and the car extended into the void: its IoU ignores void pixels
    predictions[2] = (seg, segments + [_segment(30, PERSON)])
    r = _evaluate(dataset, predictions)
    assert r["PQ"] == pytest.approx(100.0) and r["PQ-person"] == pytest.approx(100.0)


def test_zero_predictions_give_pq_zero(dataset):
    r = _evaluate(dataset, {})
    assert r["PQ"] == 0.0 and r["PQ_th"] == 0.0 and r["PQ_st"] == 0.0


def test_partial_predictions_score_the_predicted_images(dataset):
    r = _evaluate(dataset, {1: _perfect()[1]})
    assert r["PQ"] == pytest.approx(100.0) and "PQ-car" not in r  # car appears only in image 2


def test_unknown_category_and_image_are_clear_errors(dataset):
    seg, _ = _perfect()[1]
    with pytest.raises(ValueError, match="stuff category 7 has no dataset id"):
        _evaluate(dataset, {1: (seg, [{"id": 10, "category_id": 7, "isthing": False}])})
    with pytest.raises(ValueError, match="image ids \\[9\\]"):
        _evaluate(dataset, {9: (seg, [_segment(10, PERSON), _segment(11, SKY)])})


def test_rgb_id_round_trip():
    ids = np.array([[0, 1, 255, 256], [65535, 65536, 256 ** 3 - 1, 7]])
    assert np.array_equal(rgb2id(id2rgb(ids)), ids)
    with pytest.raises(ValueError, match="256\\^3"):
        id2rgb(np.array([256 ** 3]))


def test_trainer_chooses_evaluators_as_upstream():
    from mask2former_rankseg.config import get_cfg
    from mask2former_rankseg.engine import Trainer
    from mask2former_rankseg.evaluation import InstanceSegEvaluator, RankSegEvaluator, SemSegEvaluator

    cfg = get_cfg()
    cfg.OUTPUT_DIR = ""
    cfg.MODEL.MASK_FORMER.TEST.PANOPTIC_ON = True
    cfg.MODEL.MASK_FORMER.TEST.INSTANCE_ON = True
    kinds = [type(e) for e in Trainer.build_evaluator(cfg, "coco_2017_val_panoptic_with_sem_seg")]
    assert kinds == [SemSegEvaluator, COCOPanopticEvaluator, InstanceSegEvaluator]
    cfg.MODEL.MASK_FORMER.TEST.SEMANTIC_ON = False
    cfg.MODEL.MASK_FORMER.TEST.INSTANCE_ON = False
    cfg.MODEL.RANKSEG.FLAG = True
    kinds = [type(e) for e in Trainer.build_evaluator(cfg, "ade20k_panoptic_val")]
    assert kinds == [SemSegEvaluator, COCOPanopticEvaluator, RankSegEvaluator]  # ADE: semantic always, as upstream

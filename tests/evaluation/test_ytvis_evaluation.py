"""YouTube-VIS video AP: spatio-temporal IoU, hand-built videos with known AP, upstream's numbers on a random case,
and the submission files."""

from __future__ import annotations

import json
import math
import zipfile

import numpy as np
import pytest
import torch
from helpers import FIXTURES
from pycocotools import mask as mask_utils

from mask2former_rankseg.evaluation import YTVISEvaluator, spatio_temporal_iou, ytvis_evaluate

H, W, T = 8, 8, 4
CASE = FIXTURES / "ytvis_reference_case.json"


def _box(y0, x0, h=2, w=2):
    m = np.zeros((H, W), dtype=bool)
    m[y0:y0 + h, x0:x0 + w] = True
    return m


def _rle(mask):
    if mask is None:
        return None
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _ground_truth(tracks, videos=(1,)):
    """tracks: (video, category, [T masks or None])."""
    return {"videos": [{"id": v, "height": H, "width": W, "length": T, "file_names": [f"{v}/{t}.jpg" for t in range(T)]}
                       for v in videos],
            "annotations": [{"id": i + 1, "video_id": v, "category_id": c, "iscrowd": 0,
                             "segmentations": [_rle(m) for m in masks],
                             "areas": [int(m.sum()) if m is not None else None for m in masks]}
                            for i, (v, c, masks) in enumerate(tracks)],
            "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]}


def _result(video, category, score, masks):
    return {"video_id": video, "category_id": category, "score": score,
            "segmentations": [_rle(m if m is not None else np.zeros((H, W), bool)) for m in masks]}


A = [_box(0, 0)] * T
B = [_box(5, 5)] * T


def test_spatio_temporal_iou_by_hand():
    g = [_box(0, 0), None, _box(4, 0, 1, 5)]  # areas 4, -, 5
    p = [_box(0, 1), _box(6, 0, 1, 3), None]  # areas 4 (2 shared with g), 3, -
    # frame 0: I 2, U 6; frame 1: prediction only, U 3; frame 2: ground truth only, U 5 -> 2 / 14
    assert spatio_temporal_iou([_rle(m) for m in p], [_rle(m) for m in g]) == pytest.approx(2 / 14)
    assert spatio_temporal_iou([None, None], [None, None]) == 0.0
    with pytest.raises(ValueError, match="3 and 2 frames"):
        spatio_temporal_iou([None] * 3, [None] * 2)


def test_perfect_tracks_score_100():
    partial = [None, _box(4, 4), _box(4, 5), None]  # a track absent in frames 0 and 3
    gt = _ground_truth([(1, 1, A), (1, 2, partial)])
    metrics = ytvis_evaluate(gt, [_result(1, 1, 0.9, A), _result(1, 2, 0.6, partial)])
    for name in ("AP", "AP50", "AP75", "APs", "AR1", "AR10", "AP-cat", "AP-dog"):
        assert metrics[name] == pytest.approx(100.0), name
    assert math.isnan(metrics["APm"]) and math.isnan(metrics["APl"])  # no track of 128² px or more


def test_track_switching_identity_halfway():
    gt = _ground_truth([(1, 1, A), (1, 1, B)])
    switch = [A[0], A[1], B[2], B[3]]
    assert spatio_temporal_iou([_rle(m) for m in switch], [_rle(m) for m in A]) == pytest.approx(1 / 3)
    metrics = ytvis_evaluate(gt, [_result(1, 1, 0.9, switch), _result(1, 1, 0.8, B)])
    # IoU 1/3 with both tracks: the switching track is a false positive at every threshold, ranked first; then
    # B is found: precision 1/2 up to recall 1/2 -> AP = 0.5 * 51/101 at every IoU threshold.
    expected = 100 * 0.5 * 51 / 101
    assert metrics["AP"] == metrics["AP50"] == metrics["AP75"] == pytest.approx(expected)
    assert metrics["AR1"] == 0.0 and metrics["AR10"] == pytest.approx(50.0)
    alone = ytvis_evaluate(gt, [_result(1, 1, 0.9, switch)])
    assert alone["AP"] == alone["AP50"] == alone["AR10"] == 0.0


def test_empty_predictions():
    gt = _ground_truth([(1, 1, A), (2, 1, B)], videos=(1, 2))
    metrics = ytvis_evaluate(gt, [_result(1, 1, 0.9, A)])  # video 2 processed, nothing predicted
    assert metrics["AP"] == pytest.approx(100 * 51 / 101) and metrics["AR1"] == pytest.approx(50.0)
    nothing = ytvis_evaluate(gt, [])
    assert nothing["AP"] == nothing["AP50"] == nothing["AR10"] == 0.0
    only_one = ytvis_evaluate(gt, [_result(1, 1, 0.9, A)], video_ids=[1])  # video 2 not evaluated
    assert only_one["AP"] == pytest.approx(100.0)


def test_matches_upstream_on_a_random_case():
    case = json.loads(CASE.read_text())
    metrics, evaluation = ytvis_evaluate(case["ground_truth"], case["results"], return_eval=True)
    np.testing.assert_allclose(evaluation.stats, case["upstream_stats"], rtol=0, atol=1e-12)
    assert metrics["AP"] == pytest.approx(100 * case["upstream_stats"][0])
    assert metrics["APl"] == pytest.approx(100 * case["upstream_stats"][5]) and metrics["APl"] > 0


def test_result_errors():
    gt = _ground_truth([(1, 1, A)])
    with pytest.raises(ValueError, match="video 9, which is not in the ground truth"):
        ytvis_evaluate(gt, [_result(9, 1, 0.5, A)])
    with pytest.raises(ValueError, match="category id 7"):
        ytvis_evaluate(gt, [_result(1, 7, 0.5, A)])
    with pytest.raises(ValueError, match="has 2 frames; the video has 4"):
        ytvis_evaluate(gt, [_result(1, 1, 0.5, A[:2])])


def _output(*instances):
    return {"image_size": (H, W), "pred_scores": [s for s, _, _ in instances],
            "pred_labels": [c for _, c, _ in instances],
            "pred_masks": [torch.from_numpy(np.stack(m)) for _, _, m in instances]}


def test_evaluator_writes_the_submission_and_scores(tmp_path):
    gt = _ground_truth([(1, 2, A), (2, 1, B)], videos=(1, 2))
    (tmp_path / "valid.json").write_text(json.dumps(gt))
    evaluator = YTVISEvaluator(output_dir=str(tmp_path / "out"), json_file=str(tmp_path / "valid.json"),
                               thing_dataset_id_to_contiguous_id={1: 0, 2: 1})
    video = {"length": T, "height": H, "width": W}
    evaluator.process([dict(video, video_id=1)], [_output((0.7, 1, A), (0.2, 0, B))])
    evaluator.process([dict(video, video_id=2)], _output())  # a bare dict, no instances
    metrics = evaluator.evaluate()["segm"]
    # dog: found (100); cat: the only prediction is on video 1, where there is no cat -> AP 0
    assert metrics["AP-dog"] == pytest.approx(100.0) and metrics["AP-cat"] == 0.0
    assert metrics["AP"] == pytest.approx(50.0)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [(r["video_id"], r["category_id"], r["score"]) for r in results] == [(1, 2, 0.7), (1, 1, 0.2)]
    assert len(results[0]["segmentations"]) == T and isinstance(results[0]["segmentations"][0]["counts"], str)
    assert np.array_equal(mask_utils.decode(results[0]["segmentations"][2]), A[2].astype(np.uint8))
    with zipfile.ZipFile(tmp_path / "out" / "results.zip") as archive:
        assert archive.namelist() == ["results.json"]
        assert json.loads(archive.read("results.json")) == results
    assert json.loads((tmp_path / "out" / "ytvis_evaluation.json").read_text())["segm"]["AP"] == pytest.approx(50.0)

    del gt["annotations"]  # the official valid/test JSONs: submission only
    (tmp_path / "valid.json").write_text(json.dumps(gt))
    evaluator.reset()
    evaluator.process([dict(video, video_id=1)], [_output((0.7, 1, A))])
    assert evaluator.evaluate() == {}
    assert len(json.loads((tmp_path / "out" / "results.json").read_text())) == 1


def test_evaluator_checks_the_output_shape(tmp_path):
    evaluator = YTVISEvaluator(json_file=str(tmp_path / "x.json"), thing_dataset_id_to_contiguous_id={1: 0})
    with pytest.raises(ValueError, match=r"Video 3: predicted masks of shape \(2, 8, 8\); expected .*T=4"):
        evaluator.process([{"video_id": 3, "length": T, "height": H, "width": W}], [_output((0.5, 0, A[:2]))])
    with pytest.raises(ValueError, match="predicted class 5"):
        evaluator.process([{"video_id": 3, "length": T, "height": H, "width": W}], [_output((0.5, 5, A))])

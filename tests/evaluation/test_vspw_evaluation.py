"""VSPW evaluation: mIoU and video consistency VC_n by hand, against VSPW's official script on a random case, and
across clips and processes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from helpers import FIXTURES
from PIL import Image

from mask2former_rankseg.evaluation import VideoConsistency, VSPWEvaluator, clip_consistency

CASE = FIXTURES / "vspw_vc_reference_case.json"


def test_clip_consistency_by_hand():
    gt = [np.array(g) for g in ([[1, 1], [2, 3]], [[1, 1], [2, 4]], [[1, 0], [2, 3]])]
    pred = [np.array(p) for p in ([[5, 5], [6, 6]], [[5, 5], [7, 6]], [[5, 6], [6, 6]])]
    # ground truth constant at (0,0) and (1,0); prediction constant at (0,0) and (1,1): 1 of 2
    assert clip_consistency(gt, pred) == 0.5
    assert math.isnan(clip_consistency([np.array([[1]]), np.array([[2]])], [np.array([[0]])] * 2))


def test_clip_rules_of_the_official_script():
    vc = VideoConsistency(clip_lengths=(3,))
    gt = np.ones((2, 2), dtype=np.uint8)
    for t in range(5):  # prediction constant on frames 0-3, changes on frame 4
        vc.add("v", t, 5, gt, np.full((2, 2), 7 if t == 4 else 1, dtype=np.uint8))
    # clips start at 0 .. L - n - 1 = 1: (0-2), (1-3) are consistent; the clip ending at the last frame is not counted
    assert vc.merge([vc.state()]) == {3: 100.0}
    short = VideoConsistency(clip_lengths=(3,))
    for t in range(3):  # a video of n frames gives no clip
        short.add("w", t, 3, gt, gt)
    assert math.isnan(short.merge([short.state()])[3])
    with pytest.raises(ValueError, match=">= 2"):
        VideoConsistency(clip_lengths=(1,))


def _reference():
    case = json.loads(CASE.read_text())
    videos = [(k, np.array(v["gt"], np.uint8), np.array(v["pred"], np.uint8)) for k, v in case["videos"].items()]
    return videos, {int(n): 100 * v for n, v in case["vc"].items()}


def test_matches_the_official_script():
    videos, expected = _reference()
    vc = VideoConsistency()
    for name, gt, pred in videos:
        for t in range(len(gt)):
            vc.add(name, t, len(gt), gt[t], pred[t])
    result = vc.merge([vc.state()])
    assert result[8] == pytest.approx(expected[8], abs=1e-9) and result[16] == pytest.approx(expected[16], abs=1e-9)
    assert vc.state()["parts"] == []  # whole videos: no frames kept


@pytest.mark.parametrize("processes,chunk", [(2, 5), (3, 20), (7, 3)])
def test_clips_split_across_processes_are_stitched(processes, chunk):
    videos, expected = _reference()
    frames = [(name, t, len(gt), gt[t], pred[t]) for name, gt, pred in videos for t in range(len(gt))]
    chunks = [frames[i:i + chunk] for i in range(0, len(frames), chunk)]
    states = []
    for ranks_chunks in np.array_split(np.arange(len(chunks)), processes):  # contiguous shards, as InferenceSampler
        vc = VideoConsistency()
        for c in ranks_chunks:
            for frame in chunks[c]:
                vc.add(*frame)
        states.append(vc.state())
    result = VideoConsistency().merge(states)
    assert result[8] == pytest.approx(expected[8], abs=1e-9) and result[16] == pytest.approx(expected[16], abs=1e-9)


def test_vspw_evaluator_by_hand(tmp_path):
    raw = [[1, 1, 2, 0], [1, 2, 2, 255], [1, 2, 2, 255]]  # 0 ("others") and 255 (void) are ignored
    pred = [[0, 1, 1, 2], [0, 1, 1, 1], [0, 1, 2, 0]]
    files = []
    for t, row in enumerate(raw):
        Image.fromarray(np.array([row], dtype=np.uint8)).save(tmp_path / f"{t}.png")
        files.append(str(tmp_path / f"{t}.png"))
    evaluator = VSPWEvaluator(num_classes=3, ignore_label=255, class_names=["a", "b", "c"], clip_lengths=(2,),
                              output_dir=str(tmp_path / "out"))
    first = {"video_id": "v", "sem_seg_file_names": files[:2], "frame_offset": 0, "video_length": 3, "length": 2}
    second = {"video_id": "v", "sem_seg_file_names": files[2:], "frame_offset": 2, "video_length": 3, "length": 1}
    evaluator.process([first], [{"sem_seg_labels": torch.tensor([[pred[0]], [pred[1]]])}])
    scores = torch.nn.functional.one_hot(torch.tensor([[pred[2]]]), 3).permute(3, 0, 1, 2).float()  # [K, T, H, W]
    evaluator.process([second], {"sem_seg": scores})
    metrics = evaluator.evaluate()["sem_seg"]
    # class a: gt 4 px, predicted 3 of them and nothing else -> 3/4; class b: gt 5, pred 5, shared 4 -> 4/6
    assert metrics["IoU-a"] == pytest.approx(75.0) and metrics["IoU-b"] == pytest.approx(400 / 6)
    assert math.isnan(metrics["IoU-c"]) and metrics["mIoU"] == pytest.approx((75 + 400 / 6) / 2)
    assert metrics["pACC"] == pytest.approx(700 / 9)
    # one clip (frames 0-1); raw labels constant at pixels 0 and 2 (pixel 3 goes 0 -> 255), prediction too: 100
    assert metrics["VC2"] == pytest.approx(100.0)
    assert list(metrics)[:5] == ["mIoU", "fwIoU", "mACC", "pACC", "VC2"]
    assert json.loads((tmp_path / "out" / "vspw_evaluation.json").read_text())["sem_seg"]["VC2"] == 100.0


def test_vspw_evaluator_errors(tmp_path):
    evaluator = VSPWEvaluator(num_classes=3, class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="VSPW video v has no 'sem_seg_file_names'"):
        evaluator.process([{"video_id": "v"}], [{"sem_seg_labels": torch.zeros(1, 1, 1)}])
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(tmp_path / "0.png")
    inp = {"video_id": "v", "sem_seg_file_names": [str(tmp_path / "0.png")]}
    with pytest.raises(KeyError, match="neither 'sem_seg_labels'"):
        evaluator.process([inp], [{}])
    with pytest.raises(ValueError, match="differ in size"):
        evaluator.process([inp], [{"sem_seg_labels": torch.zeros(1, 3, 2, dtype=torch.long)}])

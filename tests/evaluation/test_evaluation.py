"""Evaluation: hand-computed semantic metrics, RankSeg ranking metrics, evaluator plumbing, comm helpers."""

import json
import math
import os
import socket
import uuid

import numpy as np
import pytest
import torch
from PIL import Image

from mask2former_rankseg.data import MetadataCatalog
from mask2former_rankseg.evaluation import (
    DatasetEvaluator,
    DatasetEvaluators,
    RankSegEvaluator,
    SemSegEvaluator,
    format_results_table,
    image_average_precision,
    image_precision,
    image_recall,
    inference_on_dataset,
    write_results_json,
)
from mask2former_rankseg.utils import comm

I = 255  # ignore

# 4x4 case used by several tests: 3 classes present (a, b, c), class d absent, 3 ignored pixels.
GT = np.array([[0, 0, 1, 1],
               [0, 0, 1, 1],
               [2, 2, 2, I],
               [2, 2, I, I]], dtype=np.uint8)
PRED = np.array([[0, 1, 1, 1],
                 [0, 0, 1, 2],
                 [2, 2, 0, 0],
                 [2, 1, 0, 1]], dtype=np.int64)


def _name(prefix: str) -> str:
    return f"_test_eval_{prefix}_{uuid.uuid4().hex[:8]}"


def _scores(pred: np.ndarray, k: int) -> torch.Tensor:
    """One-hot [K, H, W] scores whose argmax is ``pred``."""
    return torch.nn.functional.one_hot(torch.from_numpy(np.asarray(pred, dtype=np.int64)), k).permute(2, 0, 1).float()


def _png(path, array) -> str:
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)
    return str(path)


# ----------------------------------------------------------------------------------------------- sem seg
def test_sem_seg_confusion_matrix_and_metrics_by_hand(tmp_path):
    name = _name("semseg")
    MetadataCatalog.get(name).set(stuff_classes=["a", "b", "c", "d"], ignore_label=I)
    ev = SemSegEvaluator(name, distributed=True, output_dir=str(tmp_path / "out"))
    ev.process([{"file_name": "img.jpg", "sem_seg_file_name": _png(tmp_path / "gt.png", GT)}],
               [{"sem_seg": _scores(PRED, 4)}])
    # Pixel by pixel (pred <- gt), ignored pixels (2,3) pred a, (3,2) pred a, (3,3) pred b go to column 4:
    #   gt a: (0,0) a, (0,1) b, (1,0) a, (1,1) a           -> a<-a 3, b<-a 1
    #   gt b: (0,2) b, (0,3) b, (1,2) b, (1,3) c           -> b<-b 3, c<-b 1
    #   gt c: (2,0) c, (2,1) c, (2,2) a, (3,0) c, (3,1) b  -> c<-c 3, a<-c 1, b<-c 1
    expected = np.array([[3, 0, 1, 0, 2],
                         [1, 3, 1, 0, 1],
                         [0, 1, 3, 0, 0],
                         [0, 0, 0, 0, 0],
                         [0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(ev.confusion_matrix, expected)
    res = ev.evaluate()["sem_seg"]
    # tp = [3, 3, 3], gt pixels = [4, 4, 5] (13), predicted (non-ignored) = [4, 5, 4]
    iou = [3 / (4 + 4 - 3), 3 / (4 + 5 - 3), 3 / (5 + 4 - 3)]  # 0.6, 0.5, 0.5
    acc = [3 / 4, 3 / 4, 3 / 5]
    assert res["IoU-a"] == pytest.approx(60.0) and res["IoU-b"] == pytest.approx(50.0)
    assert res["IoU-c"] == pytest.approx(50.0)
    assert res["ACC-a"] == pytest.approx(75.0) and res["ACC-c"] == pytest.approx(60.0)
    assert res["mIoU"] == pytest.approx(100 * (0.6 + 0.5 + 0.5) / 3)
    assert res["mIoU"] == pytest.approx(100 * sum(iou) / 3)
    assert res["fwIoU"] == pytest.approx(100 * (4 * 0.6 + 4 * 0.5 + 5 * 0.5) / 13)
    assert res["mACC"] == pytest.approx(100 * sum(acc) / 3) and res["mACC"] == pytest.approx(70.0)
    assert res["pACC"] == pytest.approx(100 * 9 / 13)
    # class d: neither in the ground truth nor predicted -> NaN, and the means above left it out
    assert math.isnan(res["IoU-d"]) and math.isnan(res["ACC-d"])
    written = json.loads((tmp_path / "out" / "sem_seg_evaluation.json").read_text())
    assert written["sem_seg"]["mIoU"] == pytest.approx(res["mIoU"])
    assert written["sem_seg"]["IoU-d"] is None
    assert list(written["sem_seg"])[:4] == ["mIoU", "fwIoU", "mACC", "pACC"]


def test_sem_seg_tensor_ground_truth_and_predicted_but_absent_class():
    ev = SemSegEvaluator(num_classes=4, ignore_label=I, distributed=False, class_names=["a", "b", "c", "d"])
    pred = PRED.copy()
    pred[0, 1] = 3  # a gt-a pixel predicted as d, which has no ground truth
    ev.process([{"sem_seg": torch.from_numpy(GT.astype(np.int64))}], [{"sem_seg": _scores(pred, 4)}])
    res = ev.evaluate()["sem_seg"]
    # d has no ground truth: NaN even though predicted (detectron2's rule); a keeps tp 3 of gt 4, but its
    # predictions are now 3 (on gt a) + 1 (on gt c) = 4 -> IoU 3 / (4 + 4 - 3); b loses a false positive.
    assert math.isnan(res["IoU-d"]) and math.isnan(res["ACC-d"])
    assert res["IoU-a"] == pytest.approx(100 * 3 / 5)
    assert res["IoU-b"] == pytest.approx(100 * 3 / (4 + 4 - 3))
    assert res["mIoU"] == pytest.approx(100 * (3 / 5 + 3 / 5 + 3 / 6) / 3)
    assert res["pACC"] == pytest.approx(100 * 9 / 13)


def test_sem_seg_accumulates_and_resets():
    ev = SemSegEvaluator(num_classes=4, ignore_label=I, distributed=False)
    inp, out = [{"sem_seg": torch.from_numpy(GT.astype(np.int64))}], [{"sem_seg": _scores(PRED, 4)}]
    ev.process(inp * 2, out * 2)
    assert ev.confusion_matrix.sum() == 32 and ev.confusion_matrix[0, 0] == 6
    assert ev.evaluate()["sem_seg"]["mIoU"] == pytest.approx(100 * 1.6 / 3)  # doubling changes no ratio
    ev.reset()
    assert ev.confusion_matrix.sum() == 0


def test_sem_seg_errors_name_the_file(tmp_path):
    path = _png(tmp_path / "gt_small.png", np.zeros((3, 3)))
    ev = SemSegEvaluator(num_classes=2, ignore_label=I, distributed=False)
    with pytest.raises(ValueError, match="gt_small.png"):
        ev.process([{"sem_seg_file_name": path}], [{"sem_seg": torch.zeros(2, 4, 4)}])
    bad = _png(tmp_path / "gt_bad_label.png", np.full((2, 2), 7))
    with pytest.raises(ValueError, match=r"gt_bad_label.png.*\[7\]"):
        ev.process([{"sem_seg_file_name": bad}], [{"sem_seg": torch.zeros(2, 2, 2)}])
    with pytest.raises(ValueError, match=r"\[2, H, W\]"):
        ev.process([{"sem_seg_file_name": path}], [{"sem_seg": torch.zeros(3, 3, 3)}])
    with pytest.raises(OSError, match="missing.png"):
        ev.process([{"sem_seg_file_name": str(tmp_path / "missing.png")}], [{"sem_seg": torch.zeros(2, 3, 3)}])
    with pytest.raises(ValueError, match="num_classes"):
        SemSegEvaluator(_name("nometa"), distributed=False)
    assert ev.confusion_matrix.sum() == 0  # nothing half-added


# ----------------------------------------------------------------------------------------------- ranking
def _upstream_style_ap(present: torch.Tensor, scores: torch.Tensor) -> float:
    """Upstream's formula: each present class's 0-based rank V, sorted; AP = sum_j j / (V_j + 1) / n."""
    aps = []
    for p, s in zip(present, scores):
        order = torch.argsort(s, descending=True)
        rank_of = torch.empty_like(order)
        rank_of[order] = torch.arange(len(order))
        v = rank_of[p].sort().values.float()
        if len(v):
            aps.append(float((torch.arange(1, len(v) + 1) / (v + 1)).sum() / len(v)))
    return sum(aps) / len(aps)


def test_ranking_metrics_by_hand():
    present = torch.tensor([[True, False, True, False]])  # {0, 2}
    topk = torch.tensor([[2, 1]])
    assert image_recall(present, topk).item() == pytest.approx(0.5)  # 1 of the 2 present selected
    assert image_precision(present, topk).item() == pytest.approx(0.5)  # 1 of the 2 selected present
    # ranking 2, 1, 0, 3 -> present categories at ranks 1 and 3: AP = (1/1 + 2/3) / 2
    scores = torch.tensor([[0.3, 0.5, 0.9, 0.1]])
    assert image_average_precision(present, scores).item() == pytest.approx((1 + 2 / 3) / 2)
    # a second image with no present category is skipped by all three
    present2 = torch.cat([present, torch.zeros(1, 4, dtype=torch.bool)])
    assert image_average_precision(present2, scores.repeat(2, 1)).item() == pytest.approx((1 + 2 / 3) / 2)
    assert image_recall(present2, topk.repeat(2, 1)).item() == pytest.approx(0.5)
    assert image_precision(present2, topk.repeat(2, 1)).item() == pytest.approx(0.5)
    # batch of two: recall (1/2 + 2/2) / 2, precision (1/2 + 1/2) / 2 for present {1, 3}, top-k [3, 1]
    present3 = torch.tensor([[True, False, True, False], [False, True, False, True]])
    topk3 = torch.tensor([[2, 1], [3, 1]])
    assert image_recall(present3, topk3).item() == pytest.approx(0.75)
    assert image_precision(present3, topk3).item() == pytest.approx(1.0 * 0.5 + 0.5 * 0.5)
    assert math.isnan(image_recall(torch.zeros(1, 4, dtype=torch.bool), topk).item())
    with pytest.raises(ValueError, match="no object"):
        image_recall(present, torch.tensor([[2, 4]]))


def test_average_precision_matches_upstream_formula():
    g = torch.Generator().manual_seed(3)
    present = torch.rand(7, 12, generator=g) < 0.3
    present[0] = False
    present[1, 5] = True
    scores = torch.randn(7, 12, generator=g)
    assert image_average_precision(present, scores).item() == pytest.approx(_upstream_style_ap(present, scores))
    # a perfect ranking has AP 1
    assert image_average_precision(present[1:], present[1:].float()).item() == pytest.approx(1.0)


def test_rankseg_evaluator_end_to_end(tmp_path):
    name = _name("rankseg")
    MetadataCatalog.get(name).set(stuff_classes=["a", "b", "c", "d"], ignore_label=I)
    ev = RankSegEvaluator(name, distributed=True, output_dir=str(tmp_path))
    inputs = [{"sem_seg_file_name": _png(tmp_path / "g1.png", [[0, 2], [I, 2]])},  # present {0, 2}
              {"sem_seg": torch.tensor([[1, 1], [1, I]])}]  # present {1}
    outputs = [
        {"multilabel": {"scores": torch.tensor([0.3, 0.5, 0.9, 0.1]), "topk": torch.tensor([2, 1])}},
        {"multilabel": {"scores": torch.tensor([0.0, 0.9, 0.1, 0.8]), "topk": torch.tensor([1, 3])}},
    ]
    ev.process(inputs[:1], outputs[:1])
    ev.process(inputs[1:], outputs[1:])
    res = ev.evaluate()["rankseg"]
    assert res["recall"] == pytest.approx(100 * (1 / 2 + 1 / 1) / 2)
    assert res["precision"] == pytest.approx(100 * (1 / 2 + 1 / 2) / 2)
    assert res["mAP"] == pytest.approx(100 * ((1 / 1 + 2 / 3) / 2 + 1 / 1) / 2)
    assert res["num_images"] == 2
    assert json.loads((tmp_path / "rankseg_evaluation.json").read_text())["rankseg"]["num_images"] == 2
    with pytest.raises(KeyError, match="RANKSEG.FLAG"):
        ev.process(inputs[1:], [{"sem_seg": torch.zeros(4, 2, 2)}])
    ev.reset()
    assert ev.evaluate()["rankseg"]["num_images"] == 0


# ----------------------------------------------------------------------------------------------- plumbing
class _Const(DatasetEvaluator):
    def __init__(self, result):
        self.result, self.seen = result, 0

    def reset(self):
        self.seen = 0

    def process(self, inputs, outputs):
        self.seen += len(inputs)

    def evaluate(self):
        return {k: dict(v, seen=self.seen) for k, v in self.result.items()}


def test_evaluators_merge_and_duplicates():
    name = _name("merge")
    MetadataCatalog.get(name).set(stuff_classes=["x", "y"], ignore_label=I)
    combo = DatasetEvaluators([SemSegEvaluator(name, distributed=False), RankSegEvaluator(name, distributed=False)])
    combo.process([{"sem_seg": torch.tensor([[0, 1]])}],
                  [{"sem_seg": _scores(np.array([[0, 1]]), 2),
                    "multilabel": {"scores": torch.tensor([1.0, 0.0]), "topk": torch.tensor([0])}}])
    res = combo.evaluate()
    assert list(res) == ["sem_seg", "rankseg"] and res["sem_seg"]["mIoU"] == pytest.approx(100.0)
    assert res["rankseg"]["recall"] == pytest.approx(50.0) and res["rankseg"]["precision"] == pytest.approx(100.0)
    with pytest.raises(KeyError, match="same task 'a'"):
        DatasetEvaluators([_Const({"a": {"m": 1.0}}), _Const({"a": {"n": 2.0}})]).evaluate()


def test_format_results_table():
    res = {"sem_seg": {"mIoU": 53.3333, "IoU-wall": 1.0}, "rankseg": {"mAP": float("nan"), "num_images": 2}}
    table = format_results_table(res)
    lines = table.splitlines()
    assert len(lines) == 2 + 3 and "53.333" in lines[2] and "IoU-wall" not in table
    assert "nan" in lines[3] and lines[4].rstrip("| ").endswith("2")
    assert "IoU-wall" in format_results_table(res, per_class=True)
    assert "ds1/sem_seg" in format_results_table({"ds1": res, "ds2": res})
    assert format_results_table({}) == "(no results)"


def test_write_results_json_is_atomic(tmp_path):
    path = tmp_path / "sub" / "r.json"
    write_results_json({"t": {"x": np.float64(1.5), "n": float("nan"), "i": np.int64(3)}}, path)
    assert json.loads(path.read_text()) == {"t": {"x": 1.5, "n": None, "i": 3}}
    with pytest.raises(TypeError):
        write_results_json({"t": {"bad": object()}}, path)
    assert json.loads(path.read_text())["t"]["x"] == 1.5  # old file intact
    assert os.listdir(path.parent) == ["r.json"]  # no temporary left behind


class _Fixed(torch.nn.Module):
    def __init__(self, fail_at=None):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))
        self.calls, self.fail_at = [], fail_at

    def forward(self, inputs):
        self.calls.append((self.training, torch.is_grad_enabled()))
        if len(self.calls) == self.fail_at:
            raise RuntimeError("boom")
        return [{"sem_seg": _scores(np.array([[1, 1]]), 2) * self.w} for _ in inputs]


def test_inference_on_dataset_restores_training_mode():
    model = _Fixed().train()
    ev = SemSegEvaluator(num_classes=2, ignore_label=I, distributed=False)
    loader = [[{"sem_seg": torch.tensor([[1, 0]])}], [{"sem_seg": torch.tensor([[1, 1]])}] * 2]
    res = inference_on_dataset(model, loader, ev)
    assert model.training and model.calls == [(False, False), (False, False)]
    assert res["sem_seg"]["pACC"] == pytest.approx(100 * 5 / 6)  # 6 pixels, one gt-0 pixel predicted 1
    assert list(inference_on_dataset(model, loader, None)) == []
    model.eval()
    inference_on_dataset(model, loader, ev)
    assert not model.training
    failing = _Fixed(fail_at=2).train()
    with pytest.raises(RuntimeError, match="boom"):
        inference_on_dataset(failing, loader, ev)
    assert failing.training and torch.is_grad_enabled()


# ----------------------------------------------------------------------------------------------- distributed
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dist_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                         world_size=world)
    try:
        gathered = comm.all_gather({"rank": rank})
        to_root = comm.gather(rank * 10)
        reduced = comm.reduce_dict({"a": torch.tensor(float(rank + 1)), "b": torch.tensor(2.0)})
        seeds = comm.all_gather(comm.shared_random_seed())
        # each rank evaluates one half of the pixels of the 4x4 case
        rows = slice(0, 2) if rank == 0 else slice(2, 4)
        sem = SemSegEvaluator(num_classes=4, ignore_label=I, distributed=True, class_names=list("abcd"))
        sem.process([{"sem_seg": torch.from_numpy(GT[rows].astype(np.int64))}], [{"sem_seg": _scores(PRED[rows], 4)}])
        rk = RankSegEvaluator(num_classes=4, ignore_label=I, distributed=True)
        rk.process([{"sem_seg": torch.from_numpy(GT[rows].astype(np.int64))}],
                   [{"multilabel": {"scores": torch.tensor([0.3, 0.5, 0.9, 0.1]), "topk": torch.tensor([2, 1])}}])
        res = DatasetEvaluators([sem, rk]).evaluate()
        summary = {"rank": rank, "world": comm.get_world_size(), "gathered": gathered, "to_root": to_root,
                   "reduced": {k: float(v) for k, v in reduced.items()}, "seeds": seeds, "res": res}
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump(summary, f, default=lambda x: None if isinstance(x, float) and math.isnan(x) else x)
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_distributed_gather_and_evaluators(tmp_path):
    torch.multiprocessing.spawn(_dist_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["world"] == 2 and r0["gathered"] == [{"rank": 0}, {"rank": 1}] == r1["gathered"]
    assert r0["to_root"] == [0, 10] and r1["to_root"] == []
    assert r0["reduced"] == {"a": 1.5, "b": 2.0}  # averaged on rank 0
    assert r0["seeds"][0] == r0["seeds"][1] == r1["seeds"][0]
    # rank 0 holds the merged results (same as the single-process 4x4 case); rank 1 returns nothing
    assert r1["res"] == {}
    assert r0["res"]["sem_seg"]["mIoU"] == pytest.approx(100 * 1.6 / 3)
    assert r0["res"]["sem_seg"]["pACC"] == pytest.approx(100 * 9 / 13)
    # rank 0 image: present {0, 1}, top-k [2, 1] -> recall 1/2; rank 1 image: present {2} -> recall 1
    assert r0["res"]["rankseg"]["recall"] == pytest.approx(75.0) and r0["res"]["rankseg"]["num_images"] == 2

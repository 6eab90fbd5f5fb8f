"""Multi-process training and evaluation on torch.distributed, on the CPU with Gloo.

One spawned 2-process session (:func:`_two_process_session`) does everything that needs two ranks, so
process start-up is paid once; the test functions compare what it saved with single-process runs:

* SyncBN on CPU shards == BatchNorm on the whole batch (output, gradients, running statistics);
* K training steps of a deterministic per-pixel model (real ResNet with SyncBN, real synthetic data
  pipeline with random crops and flips, AdamW, clipping) on 2 ranks x 2 images == 1 process x 4 images,
  and a control: the same with plain BN differs (per-rank statistics), so the equality is not vacuous;
* Mask2Former + RankSeg trains in sync on 2 ranks, and its 2-rank evaluation (5 images, shards of 3 and
  2) equals a single-process evaluation of the same weights exactly;
* a NaN on one rank stops both; an IMS_PER_BATCH that does not divide is a clear error.

Why not Mask2Former itself for the training equality: its criterion draws random points per process (point
sampling in the matcher and the mask losses) and averages the weighted cross-entropy per process, so no
multi-process run of it (upstream's included) reproduces a single-process run; the per-pixel model has no
random pieces and normalises its loss by the labelled pixels of all processes, which isolates what the
engine must get right (sharding, per-sample augmentation seeds, DDP averaging, SyncBN, optimizer state).
"""

from __future__ import annotations

import datetime
import importlib
import itertools
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from helpers import (
    REPO,
    TINY_MASK2FORMER,
    make_tiny_synthetic,
    make_tiny_synthetic_panoptic,
    tiny_mask2former_cfg,
)
from PIL import Image
from torch import nn
from torch.nn import functional as F

from mask2former_rankseg.config import get_cfg
from mask2former_rankseg.constants import IGNORE_LABEL
from mask2former_rankseg.data import DatasetCatalog, samplers
from mask2former_rankseg.data import build as data_build
from mask2former_rankseg.engine import Trainer, launch
from mask2former_rankseg.evaluation import COCOPanopticEvaluator, SemSegEvaluator
from mask2former_rankseg.layers import SyncBatchNorm2d
from mask2former_rankseg.modeling.build import build_backbone
from mask2former_rankseg.utils import comm
from mask2former_rankseg.utils.panoptic import rgb2id

TRAIN_STEPS = 4
NAN_RANK = 1
NUM_CLASSES = 108  # the synthetic dataset's
PANOPTIC_VAL = "synthetic_panoptic_val"


# --------------------------------------------------------------------------------------------------
# a deterministic per-pixel model on the real backbone and data pipeline
# --------------------------------------------------------------------------------------------------
class PixelClassifier(nn.Module):
    """ResNet stem + res2 (``MODEL.RESNETS.NORM``) and a 1x1 classifier, upsampled x4; cross-entropy summed
    over labelled pixels and divided by their mean count per process (all-reduced), so that DDP's gradient
    average equals the gradient of the mean over the whole global batch."""

    def __init__(self, cfg, nan_on_rank=None):
        super().__init__()
        self.backbone = build_backbone(cfg)
        self.head = nn.Conv2d(self.backbone.output_shape()["res2"].channels, cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES, 1)
        self.register_buffer("pixel_mean", torch.tensor(cfg.MODEL.PIXEL_MEAN).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(cfg.MODEL.PIXEL_STD).view(-1, 1, 1), False)
        self.nan_on_rank = nan_on_rank
        self.calls = 0

    def forward(self, batch):
        images = torch.stack([(x["image"].float() - self.pixel_mean) / self.pixel_std for x in batch])
        logits = self.head(self.backbone(images)["res2"])
        logits = F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)
        labels = torch.stack([x["sem_seg"] for x in batch]).long()
        count = (labels != IGNORE_LABEL).sum().double()
        if comm.get_world_size() > 1:
            dist.all_reduce(count)
            count = count / comm.get_world_size()
        loss = F.cross_entropy(logits, labels, ignore_index=IGNORE_LABEL, reduction="sum") / count.clamp(min=1)
        if self.nan_on_rank == comm.get_rank() and self.calls == 1:
            loss = loss * float("nan")
        self.calls += 1
        return {"loss_ce": loss.float()}


class CorruptedGroundTruth(nn.Module):
    """A stand-in model for evaluation tests: one-hot scores of the image's ground truth with every third
    pixel (on a diagonal pattern) relabelled to the next class, so that the metrics are non-trivial and
    depend on every image evaluated."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes

    def forward(self, batch):
        outputs = []
        for x in batch:
            gt = torch.from_numpy(np.array(Image.open(x["sem_seg_file_name"]), dtype=np.int64))
            labels = torch.where(gt == IGNORE_LABEL, 0, gt)
            rows, cols = torch.meshgrid(torch.arange(gt.shape[0]), torch.arange(gt.shape[1]), indexing="ij")
            labels = torch.where((rows + cols) % 3 == 0, (labels + 1) % self.num_classes, labels)
            outputs.append({"sem_seg": F.one_hot(labels, self.num_classes).permute(2, 0, 1).float()})
        return outputs


class CorruptedPanopticGroundTruth(nn.Module):
    """The panoptic counterpart: the image's ground-truth segments, every third one left out (void)."""

    def forward(self, batch):
        outputs = []
        for x in batch:
            ids = torch.from_numpy(rgb2id(np.array(Image.open(x["pan_seg_file_name"]).convert("RGB"))))
            kept = [s for i, s in enumerate(x["segments_info"]) if i % 3 != 1]
            kept_ids = torch.tensor([s["id"] for s in kept], dtype=ids.dtype)
            ids = torch.where(torch.isin(ids, kept_ids), ids, 0)
            info = [{"id": s["id"], "category_id": s["category_id"], "isthing": s["isthing"]} for s in kept]
            outputs.append({"panoptic_seg": (ids, info)})
        return outputs


class PixelTrainer(Trainer):
    nan_on_rank = None

    @classmethod
    def build_model(cls, cfg):
        torch.manual_seed(0)
        return PixelClassifier(cfg, cls.nan_on_rank)


class NanPixelTrainer(PixelTrainer):
    nan_on_rank = NAN_RANK


def _pixel_cfg(norm: str, **extra):
    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / "configs" / "synthetic" / "Base-Synthetic-SemanticSegmentation.yaml"))
    cfg.merge_from_list([
        "MODEL.RESNETS.NORM", norm, "MODEL.RESNETS.OUT_FEATURES", "['res2']", "MODEL.RESNETS.STEM_OUT_CHANNELS", 8,
        "MODEL.RESNETS.RES2_OUT_CHANNELS", 8, "INPUT.MIN_SIZE_TRAIN", "(56, 64, 72)", "INPUT.CROP.SIZE", "(48, 48)",
        "INPUT.SIZE_DIVISIBILITY", 48, "SOLVER.IMS_PER_BATCH", 4, "SOLVER.MAX_ITER", TRAIN_STEPS,
        "SOLVER.BASE_LR", 0.01, "DATALOADER.NUM_WORKERS", 0, "DATASETS.TEST", "()", "OUTPUT_DIR", "", "SEED", 7,
    ])
    for k, v in extra.items():
        cfg.merge_from_list([k, v])
    return cfg


def _eval_cfg():
    return _pixel_cfg("BN", **{"DATASETS.TEST": "('synthetic_sem_seg_val',)", "INPUT.MIN_SIZE_TEST": 64})


def _panoptic_test(output_dir: Path):
    cfg = _pixel_cfg("BN", **{"DATASETS.TEST": f"('{PANOPTIC_VAL}',)", "INPUT.MIN_SIZE_TEST": 64})
    DatasetCatalog.get(PANOPTIC_VAL)  # loading refreshes the metadata paths under $DETECTRON2_DATASETS
    evaluator = COCOPanopticEvaluator(PANOPTIC_VAL, output_dir=str(output_dir), distributed=True)
    return Trainer.test(cfg, CorruptedPanopticGroundTruth(), evaluators=evaluator)


def _rankseg_cfg(output_dir):
    return tiny_mask2former_cfg(output_dir, ["SOLVER.IMS_PER_BATCH", "4", "SOLVER.MAX_ITER", "2",
                                             "SOLVER.CHECKPOINT_PERIOD", "1000", "SEED", "3"], rankseg=True)


def _state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _syncbn_inputs():
    """A batch of 6 split unevenly over two ranks (2 and 4 samples): statistics must be weighted by count."""
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(6, 3, 5, 4, generator=gen) * 3 + 1
    upstream_grad = torch.randn(6, 3, 5, 4, generator=gen)
    weight, bias = torch.rand(3, generator=gen) + 0.5, torch.randn(3, generator=gen)
    return x, upstream_grad, weight, bias, [slice(0, 2), slice(2, 6)]


# --------------------------------------------------------------------------------------------------
# the 2-process session
# --------------------------------------------------------------------------------------------------
def _two_process_session(out_dir: str) -> None:
    torch.set_num_threads(1)
    rank = comm.get_rank()
    saved = {"rank": rank, "world_size": comm.get_world_size(), "backend": dist.get_backend(), "seconds": {}}
    clock = time.perf_counter()

    def lap(name):
        nonlocal clock
        saved["seconds"][name], clock = time.perf_counter() - clock, time.perf_counter()

    x, upstream_grad, weight, bias, shards = _syncbn_inputs()
    bn = SyncBatchNorm2d(3)
    with torch.no_grad():
        bn.weight.copy_(weight)
        bn.bias.copy_(bias)
    shard = x[shards[rank]].clone().requires_grad_()
    y = bn(shard)
    (y * upstream_grad[shards[rank]]).sum().backward()
    saved["syncbn"] = {"y": y.detach(), "x_grad": shard.grad, "weight_grad": bn.weight.grad,
                       "bias_grad": bn.bias.grad, "running_mean": bn.running_mean, "running_var": bn.running_var}
    lap("syncbn")

    for norm in ("SyncBN", "BN"):
        trainer = PixelTrainer(_pixel_cfg(norm))
        trainer.train()
        saved[f"pixel_{norm}"] = _state(trainer.model.module)
        lap(f"pixel_{norm}")
    saved["echo_results"] = Trainer.test(_eval_cfg(), CorruptedGroundTruth(NUM_CLASSES))  # 5 images: 3 + 2
    saved["panoptic_results"] = _panoptic_test(Path(out_dir) / f"panoptic_rank{rank}")
    lap("echo_eval")

    trainer = Trainer(_rankseg_cfg(Path(out_dir) / "rankseg"))
    results = trainer.train()  # final evaluation on the 5 validation images, sharded 3 + 2
    saved["rankseg_state"] = _state(trainer.model.module)
    saved["rankseg_results"] = results
    lap("rankseg")

    try:
        NanPixelTrainer(_pixel_cfg("SyncBN")).train()
    except FloatingPointError as e:
        saved["nan_error"] = str(e)

    try:
        PixelTrainer(_pixel_cfg("SyncBN", **{"SOLVER.IMS_PER_BATCH": 3}))
    except ValueError as e:
        saved["batch_error"] = str(e)
    lap("errors")

    torch.save(saved, Path(out_dir) / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory):
    root = make_tiny_synthetic_panoptic(make_tiny_synthetic(tmp_path_factory.mktemp("datasets")))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DETECTRON2_DATASETS", str(root))
        yield root


@pytest.fixture(scope="module")
def session(dataset_root, tmp_path_factory):
    """What both ranks of the session saved: ``[rank 0's, rank 1's]``."""
    out = dataset_root / "session_out"
    out.mkdir()
    launch(_two_process_session, 2, dist_url="auto", args=(str(out),), backend="gloo")
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _assert_states_equal(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _max_difference(a, b):
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())


# --------------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_launch_spawns_gloo_processes(session):
    assert [(s["rank"], s["world_size"], s["backend"]) for s in session] == [(0, 2, "gloo"), (1, 2, "gloo")]


@pytest.mark.slow
def test_sync_batchnorm_on_cpu_shards_equals_batchnorm_on_the_whole_batch(session):
    x, upstream_grad, weight, bias, shards = _syncbn_inputs()
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.copy_(weight)
        bn.bias.copy_(bias)
    x = x.clone().requires_grad_()
    y = bn(x)
    (y * upstream_grad).sum().backward()
    parts = [s["syncbn"] for s in session]
    close = {"rtol": 1e-5, "atol": 1e-5}
    torch.testing.assert_close(torch.cat([p["y"] for p in parts]), y.detach(), **close)
    torch.testing.assert_close(torch.cat([p["x_grad"] for p in parts]), x.grad, **close)
    # each rank's parameter gradient covers its own samples; DDP sums (averages) them
    torch.testing.assert_close(parts[0]["weight_grad"] + parts[1]["weight_grad"], bn.weight.grad, **close)
    torch.testing.assert_close(parts[0]["bias_grad"] + parts[1]["bias_grad"], bn.bias.grad, **close)
    for p in parts:
        torch.testing.assert_close(p["running_mean"], bn.running_mean, **close)
        torch.testing.assert_close(p["running_var"], bn.running_var, **close)  # unbiased, as BatchNorm's
    assert not torch.allclose(parts[0]["y"], F.batch_norm(x[shards[0]].detach(), None, None, weight, bias, True),
                              atol=1e-3)  # a per-shard normalisation would differ


@pytest.mark.slow
def test_two_ranks_train_like_one_process_with_the_same_global_batch(session, one_thread):
    for s in session:
        assert set(s["pixel_SyncBN"]) == set(session[0]["pixel_SyncBN"])
    _assert_states_equal(session[0]["pixel_SyncBN"], session[1]["pixel_SyncBN"])  # DDP kept the replicas equal

    single = PixelTrainer(_pixel_cfg("SyncBN"))
    initial = _state(single.model)
    single.train()
    reference = _state(single.model)
    assert _max_difference(initial, reference) > 1e-3  # it trained
    assert int(reference["backbone.stem.conv1.norm.num_batches_tracked"]) == TRAIN_STEPS
    for k, v in reference.items():
        torch.testing.assert_close(session[0]["pixel_SyncBN"][k], v, rtol=1e-4, atol=2e-5, msg=k)

    # control: with per-process BatchNorm statistics the same run does not match
    single_bn = PixelTrainer(_pixel_cfg("BN"))
    single_bn.train()
    assert _max_difference(session[0]["pixel_BN"], _state(single_bn.model)) > 1e-3


def _assert_same_results(single, distributed):
    """Equal metric by metric, exactly (NaN where a class is absent on both sides)."""
    assert single.keys() == distributed.keys()
    for task in single:
        assert single[task].keys() == distributed[task].keys()
        for metric, value in single[task].items():
            other = distributed[task][metric]
            assert value == other or (math.isnan(value) and math.isnan(other)), (task, metric, value, other)


@pytest.mark.slow
def test_distributed_semantic_evaluation_equals_single_process(session, dataset_root):
    distributed = session[0]["echo_results"]
    assert session[1]["echo_results"] == {}  # only rank 0 gets the metrics
    single = Trainer.test(_eval_cfg(), CorruptedGroundTruth(NUM_CLASSES))
    _assert_same_results(single, distributed)
    assert 50 < single["sem_seg"]["pACC"] < 90 and 0 < single["sem_seg"]["mIoU"] < 100  # non-trivial metrics
    # the first three images alone (rank 0's shard) give other numbers: rank 1's were gathered
    dataset = DatasetCatalog.get("synthetic_sem_seg_val")
    evaluator = SemSegEvaluator("synthetic_sem_seg_val", distributed=False)
    inputs = [{**d} for d in dataset[:3]]
    evaluator.process(inputs, CorruptedGroundTruth(NUM_CLASSES)(inputs))
    assert evaluator.evaluate()["sem_seg"]["pACC"] != single["sem_seg"]["pACC"]


@pytest.mark.slow
def test_distributed_panoptic_evaluation_equals_single_process(session, dataset_root, tmp_path):
    distributed = session[0]["panoptic_results"]
    assert session[1]["panoptic_results"] == {}
    single = _panoptic_test(tmp_path / "single")
    _assert_same_results(single, distributed)
    assert 20 < single["panoptic_seg"]["PQ"] < 90  # segments missed on purpose, from both ranks' images
    # rank 0 wrote the predictions of all five images (PNGs gathered from rank 1 too), like one process
    predictions = dataset_root / "session_out" / "panoptic_rank0" / "panoptic_predictions"
    written = sorted(p.name for p in predictions.glob("*"))
    assert written == sorted(p.name for p in (tmp_path / "single" / "panoptic_predictions").glob("*"))
    assert len(written) == 5


@pytest.mark.slow
def test_rankseg_replicas_stay_identical_and_distributed_evaluation_equals_single_process(
        session, dataset_root, tmp_path, one_thread):
    # parameters through DDP; BatchNorm buffers (per-rank statistics) once evaluation shared rank 0's
    _assert_states_equal(session[0]["rankseg_state"], session[1]["rankseg_state"])
    distributed = session[0]["rankseg_results"]
    assert session[1]["rankseg_results"] == {}
    assert set(distributed) == {"sem_seg", "rankseg"} and distributed["rankseg"]["num_images"] == 5

    cfg = _rankseg_cfg(tmp_path)
    model = Trainer.build_model(cfg)
    model.load_state_dict(session[0]["rankseg_state"])
    _assert_same_results(Trainer.test(cfg, model), distributed)
    assert distributed["rankseg"]["mAP"] > 0  # image-level ranking scores: sensitive to every image's output


@pytest.mark.slow
def test_nan_on_one_rank_stops_every_rank_naming_iteration_and_losses(session):
    for s in session:
        assert "iteration 1" in s["nan_error"] and "loss_ce=nan" in s["nan_error"]


@pytest.mark.slow
def test_global_batch_must_divide_by_the_number_of_processes(session):
    for s in session:
        assert "SOLVER.IMS_PER_BATCH (3)" in s["batch_error"] and "multiple of 2" in s["batch_error"]


def test_training_shards_are_disjoint_and_their_union_is_the_single_process_batch(dataset_root, monkeypatch):
    """In-process, with the rank faked: per iteration, the 2 ranks' images (after random resize, crop and flip)
    are exactly the single-process batch, each image on one rank only."""
    from mask2former_rankseg.data.mappers import TRAIN_MAPPERS

    cfg = _pixel_cfg("BN")
    dicts = data_build.get_detection_dataset_dicts(cfg.DATASETS.TRAIN)
    mapper = TRAIN_MAPPERS[cfg.INPUT.DATASET_MAPPER_NAME].from_config(cfg, True)

    def batches(rank, world_size, n=3):
        monkeypatch.setattr(samplers, "get_rank_and_world_size", lambda: (rank, world_size))
        monkeypatch.setattr(data_build, "get_rank_and_world_size", lambda: (rank, world_size))
        loader = data_build.build_batch_data_loader(dicts, mapper=mapper, total_batch_size=4, seed=5)
        return list(itertools.islice(iter(loader), n))

    single = batches(0, 1)
    shards = [batches(r, 2) for r in range(2)]
    first_epoch = [x["file_name"] for step in (0, 1) for r in (0, 1) for x in shards[r][step]]
    assert sorted(first_epoch) == sorted(d["file_name"] for d in dicts)  # 8 images, each on one rank once
    for step in range(3):
        assert [len(shards[r][step]) for r in (0, 1)] == [2, 2]
        merged = [None] * 4
        merged[0::2], merged[1::2] = shards[0][step], shards[1][step]  # stream element p is on rank p % 2
        assert [x["file_name"] for x in merged] == [x["file_name"] for x in single[step]]
        for a, b in zip(merged, single[step]):
            assert torch.equal(a["image"], b["image"]) and torch.equal(a["sem_seg"], b["sem_seg"])


# --------------------------------------------------------------------------------------------------
# torchrun (env://) and several machines
# --------------------------------------------------------------------------------------------------
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra):
    here = Path(__file__).resolve().parent  # this module, for spawned interpreters that import it
    paths = [str(REPO), str(REPO / "tests"), str(here)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "OMP_NUM_THREADS": "1"}
    env.update(extra)
    return env


@pytest.mark.slow
def test_train_net_under_torchrun_trains_on_two_gloo_processes(dataset_root, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(_free_port()), str(REPO / "train_net.py"),
           "--config-file", str(REPO / "configs" / "synthetic" / "maskformer2_R18_synthetic.yaml"),
           *TINY_MASK2FORMER, "SOLVER.IMS_PER_BATCH", "4", "SOLVER.MAX_ITER", "2",
           "DATASETS.TEST", "()", "OUTPUT_DIR", str(out)]
    proc = subprocess.run(cmd, env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = (out / "log.txt").read_text()
    assert "torch.distributed backend gloo: 2 processes" in log
    assert "batch size 2 per process" in log  # IMS_PER_BATCH 4 is the global batch
    assert (out / "log.txt.rank1").is_file()
    ckpt = torch.load(out / "model_final.pth", weights_only=True)
    assert ckpt["iteration"] == 1 and len(ckpt["rng"]) == 2


def _report_rank(path: str) -> None:
    total = torch.tensor([float(dist.get_rank())])
    dist.all_reduce(total)
    Path(f"{path}.{dist.get_rank()}").write_text(
        f"{dist.get_world_size()} {os.environ['LOCAL_RANK']} {dist.get_backend()} {total.item()}")


_MACHINE_SCRIPT = """
import datetime, sys
from mask2former_rankseg.engine import launch
from test_distributed import _report_rank

if __name__ == "__main__":  # spawned processes import this file again
    launch(_report_rank, 1, num_machines=2, machine_rank=1, dist_url=sys.argv[1], args=(sys.argv[2],),
           backend="gloo", timeout=datetime.timedelta(seconds=120))
"""


@pytest.mark.slow
def test_two_machines_join_one_process_group(tmp_path):
    """Two launches on localhost stand in for two machines (one process each): machine 1 runs in a
    subprocess, machine 0 here; their processes form one group of 2."""
    script = tmp_path / "machine1.py"
    script.write_text(_MACHINE_SCRIPT)
    url = f"tcp://127.0.0.1:{_free_port()}"
    machine1 = subprocess.Popen([sys.executable, str(script), url, str(tmp_path / "rank")], env=_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    launch(_report_rank, 1, num_machines=2, machine_rank=0, dist_url=url, args=(str(tmp_path / "rank"),),
           backend="gloo", timeout=datetime.timedelta(seconds=120))  # fails instead of hanging if machine 1 does
    output = machine1.communicate(timeout=180)[0]
    assert machine1.returncode == 0, output[-3000:]
    seen = {r: (tmp_path / f"rank.{r}").read_text().split() for r in range(2)}
    assert seen == {0: ["2", "0", "gloo", "1.0"], 1: ["2", "0", "gloo", "1.0"]}


def test_ranks_of_several_processes_on_several_machines(monkeypatch):
    """Process i of machine m is rank m * N + i with LOCAL_RANK i, in a group of M * N."""
    launch_module = importlib.import_module("mask2former_rankseg.engine.launch")
    joined = []
    monkeypatch.setattr(launch_module.dist, "init_process_group", lambda **kw: joined.append(kw))
    monkeypatch.setattr(launch_module.dist, "barrier", lambda: None)
    monkeypatch.setattr(launch_module.dist, "destroy_process_group", lambda: None)
    for name, value in (("OMP_NUM_THREADS", "1"), ("LOCAL_RANK", "0"), ("LOCAL_WORLD_SIZE", "1")):
        monkeypatch.setenv(name, value)  # restored afterwards (the worker sets the last two)
    local_ranks = []
    for i in range(4):
        launch_module._distributed_worker(i, lambda: local_ranks.append(os.environ["LOCAL_RANK"]), 8, 4, 1,
                                          "tcp://10.0.0.1:1234", (), launch_module.DEFAULT_TIMEOUT, "gloo")
    assert [(j["rank"], j["world_size"], j["init_method"], j["backend"]) for j in joined] == [
        (r, 8, "tcp://10.0.0.1:1234", "gloo") for r in (4, 5, 6, 7)]
    assert local_ranks == ["0", "1", "2", "3"] and os.environ["LOCAL_WORLD_SIZE"] == "4"


def test_launch_rejects_bad_arguments():
    with pytest.raises(ValueError, match="machine-rank 2"):
        launch(print, 2, num_machines=2, machine_rank=2, dist_url="tcp://127.0.0.1:1")
    with pytest.raises(ValueError, match="--dist-url auto only works on one machine"):
        launch(print, 2, num_machines=2, machine_rank=0, dist_url="auto", backend="gloo")
    with pytest.raises(ValueError, match="Unknown torch.distributed backend 'mpi'"):
        launch(print, 2, backend="mpi")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="NCCL backend needs CUDA"):
            launch(print, 2, backend="nccl")


def test_backend_follows_model_device():
    from mask2former_rankseg.engine import backend_for_device

    assert backend_for_device("cpu") == "gloo"
    assert backend_for_device("cuda") == ("nccl" if torch.cuda.is_available() else "gloo")
    assert backend_for_device("cuda:1") == backend_for_device("cuda")

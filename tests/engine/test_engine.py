"""Engine: parameter groups, LR schedules, clipping, the training loop on a registered toy dataset, NaN stop,
exact resume, evaluation hook, metric files, two-process CPU training, command line."""

import copy
import json
import logging
import math

import numpy as np
import pytest
import torch
from helpers import REPO
from torch import nn

from mask2former_rankseg.config import ConfigError, get_cfg
from mask2former_rankseg.config.validate import validate_config
from mask2former_rankseg.data import DatasetCatalog, MetadataCatalog, build_detection_test_loader
from mask2former_rankseg.data.build import build_detection_train_loader
from mask2former_rankseg.engine import (
    HookBase,
    Trainer,
    build_gradient_clipper,
    build_lr_scheduler,
    build_optimizer,
    clip_gradients,
    default_argument_parser,
    default_setup,
    hooks,
    launch,
    warn_if_random_weights,
)
from mask2former_rankseg.engine.optim import fused_step_supported
from mask2former_rankseg.evaluation import DatasetEvaluator
from mask2former_rankseg.utils.events import CommonMetricPrinter, JSONWriter, TensorboardXWriter

# --------------------------------------------------------------------------------------------------
# a toy regression task registered like a real dataset
# --------------------------------------------------------------------------------------------------
TRAIN_SET, TEST_SET = "engine_test_toy_train", "engine_test_toy_val"
TRUE_W = np.array([1.0, -2.0, 0.5, 3.0], dtype=np.float32)


def _toy_dicts(n, seed):
    rng = np.random.RandomState(seed)
    out = []
    for i in range(n):
        x = rng.randn(4).astype(np.float32)
        out.append({"file_name": f"toy_{seed}_{i}.png", "image_id": i, "height": 1, "width": 1,
                    "x": x.tolist(), "y": float(x @ TRUE_W)})
    return out


for _name, _n, _seed in ((TRAIN_SET, 32, 1), (TEST_SET, 6, 2)):
    if _name not in DatasetCatalog:
        DatasetCatalog.register(_name, lambda n=_n, s=_seed: _toy_dicts(n, s))
        MetadataCatalog.get(_name).set(evaluator_type="toy")


def toy_train_mapper(d):
    """Augmentation that draws from numpy's global RNG, as the real mappers do."""
    x = torch.tensor(d["x"]) * (1.0 + 0.01 * float(np.random.rand()))
    return {"file_name": d["file_name"], "x": x, "y": torch.tensor(d["y"])}


def toy_test_mapper(d):
    return {"file_name": d["file_name"], "x": torch.tensor(d["x"]), "y": torch.tensor(d["y"])}


class ToyModel(nn.Module):
    """Parameter names like the real model's (backbone, norms, an embedding, ml_head.cls_emb)."""

    def __init__(self, nan_at=None):
        super().__init__()
        self.backbone = nn.Linear(4, 8)
        self.norm = nn.LayerNorm(8)
        self.query = nn.Embedding(3, 8)
        self.ml_head = nn.Module()
        self.ml_head.proj = nn.Linear(8, 8)
        self.ml_head.cls_emb = nn.Parameter(torch.zeros(1, 2, 8))
        self.out = nn.Linear(8, 1)
        self.nan_at = nan_at
        self.calls = 0

    def forward(self, batch):
        x = torch.stack([b["x"] for b in batch])
        h = self.backbone(x)
        h = self.ml_head.proj(h + 0.1 * self.norm(h)) + self.query.weight.mean(0) + self.ml_head.cls_emb.mean()
        pred = self.out(h).squeeze(-1)
        if not self.training:
            return [{"pred": p} for p in pred]
        y = torch.stack([b["y"] for b in batch])
        pred = pred * (1 + 0.01 * torch.randn_like(pred))  # the torch RNG shapes the gradients, as point sampling
        loss = ((pred - y) ** 2).mean()
        if self.nan_at is not None and self.calls == self.nan_at:
            loss = loss * float("nan")
        self.calls += 1
        return {"loss_x": loss, "loss_aux": 0.01 * h.pow(2).mean()}


class ToyEvaluator(DatasetEvaluator):
    def reset(self):
        self.errors = []

    def process(self, inputs, outputs):
        for i, o in zip(inputs, outputs):
            self.errors.append(abs(float(o["pred"]) - float(i["y"])))

    def evaluate(self):
        return {"toy": {"mae": float(np.mean(self.errors)), "IoU-a": 1.0}}


class ToyTrainer(Trainer):
    nan_at = None

    @classmethod
    def build_model(cls, cfg):
        torch.manual_seed(0)
        return ToyModel(cls.nan_at)

    @classmethod
    def build_train_loader(cls, cfg):
        return build_detection_train_loader(cfg, toy_train_mapper)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_detection_test_loader(cfg, dataset_name, mapper=toy_test_mapper)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        return ToyEvaluator()


def _cfg(out, max_iter=20, **extra):
    cfg = get_cfg()
    cfg.merge_from_list([
        "SOLVER.MAX_ITER", max_iter, "SOLVER.BASE_LR", 0.05, "SOLVER.LR_SCHEDULER_NAME", "WarmupPolyLR",
        "SOLVER.WARMUP_ITERS", 0, "SOLVER.CHECKPOINT_PERIOD", 1000, "SOLVER.IMS_PER_BATCH", 4,
        "TEST.EVAL_PERIOD", 0, "DATASETS.TRAIN", f"('{TRAIN_SET}',)", "DATASETS.TEST", "()",
        "DATALOADER.NUM_WORKERS", 0, "OUTPUT_DIR", str(out), "MODEL.DEVICE", "cpu", "SEED", 3,
        "SOLVER.CLIP_GRADIENTS.ENABLED", True, "SOLVER.CLIP_GRADIENTS.CLIP_TYPE", "full_model",
        "SOLVER.CLIP_GRADIENTS.CLIP_VALUE", 5.0,
    ])
    for k, v in extra.items():
        cfg.merge_from_list([k, v])
    return cfg


# --------------------------------------------------------------------------------------------------
# optimizer, clipping, schedules
# --------------------------------------------------------------------------------------------------
class GroupModel(ToyModel):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
        self.backbone.relative_position_bias_table = nn.Parameter(torch.zeros(3))
        self.cls_emb = nn.Linear(2, 2)  # a *module* named cls_emb
        self.tied = self.out  # shared module: its parameters must appear once
        self.frozen = nn.Linear(2, 2).requires_grad_(False)


def test_param_groups_follow_upstream_rules():
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.BASE_LR", 1.0, "SOLVER.BACKBONE_MULTIPLIER", 0.1, "SOLVER.MLHEAD_MULTIPLIER", 0.5,
                         "SOLVER.WEIGHT_DECAY", 0.05, "SOLVER.WEIGHT_DECAY_NORM", 0.001,
                         "SOLVER.WEIGHT_DECAY_EMBED", 0.01])
    model = GroupModel()
    opt = build_optimizer(cfg, model)
    assert isinstance(opt, torch.optim.AdamW)
    assert all(len(g["params"]) == 1 for g in opt.param_groups)  # one group per parameter, as upstream
    hyper = {id(g["params"][0]): (g["lr"], g["weight_decay"]) for g in opt.param_groups}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert set(hyper) == trainable and len(opt.param_groups) == len(trainable)
    approx = pytest.approx
    assert hyper[id(model.backbone[0].weight)] == (approx(0.1), 0.05)
    assert hyper[id(model.backbone[1].weight)] == (approx(0.1), 0.001)  # norm inside the backbone
    assert hyper[id(model.backbone.relative_position_bias_table)] == (approx(0.1), 0.0)
    assert hyper[id(model.norm.bias)] == (1.0, 0.001)
    assert hyper[id(model.query.weight)] == (1.0, 0.01)
    assert hyper[id(model.cls_emb.weight)] == (1.0, 0.01)
    assert hyper[id(model.ml_head.proj.weight)] == (0.5, 0.05)
    # upstream matches "cls_emb" against the *module* path, so ml_head's cls_emb parameter keeps WEIGHT_DECAY
    assert hyper[id(model.ml_head.cls_emb)] == (0.5, 0.05)
    assert hyper[id(model.out.weight)] == (1.0, 0.05)

    cfg.merge_from_list(["SOLVER.OPTIMIZER", "SGD", "SOLVER.MOMENTUM", 0.8, "SOLVER.NESTEROV", True])
    sgd = build_optimizer(cfg, model)
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.param_groups[0]["momentum"] == 0.8 and sgd.param_groups[0]["nesterov"] is True
    cfg.merge_from_list(["SOLVER.OPTIMIZER", "LAMB"])
    with pytest.raises(ValueError, match="LAMB.*ADAMW.*SGD"):
        build_optimizer(cfg, model)



@pytest.mark.parametrize("optimizer", ["ADAMW", "SGD"])
def test_optimizer_uses_the_fused_step_with_the_per_parameter_loops_result(optimizer):
    """On the CPU the optimizer takes torch's fused step (one kernel per group); 20 steps from the same start
    and gradients agree with torch's per-parameter loops to float32 rounding. Not fused where torch has no
    fused kernel (integer / mixed devices)."""
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.OPTIMIZER", optimizer, "SOLVER.BASE_LR", 0.01, "SOLVER.MOMENTUM", 0.9,
                         "SOLVER.WEIGHT_DECAY", 0.05])
    torch.manual_seed(0)
    model = GroupModel()
    reference, start = copy.deepcopy(model), copy.deepcopy(model)
    fused = build_optimizer(cfg, model)
    assert all(g["fused"] is True for g in fused.param_groups)
    loop_cls = type(fused)
    loop = loop_cls([{k: (v if k != "params" else [dict(reference.named_parameters())[g["name"]]])
                      for k, v in g.items() if k != "fused"} for g in fused.param_groups], 0.01)
    assert all(not g["fused"] for g in loop.param_groups)
    for _ in range(20):
        grads = {n: torch.randn_like(p) for n, p in model.named_parameters() if p.requires_grad}
        for m in (model, reference):
            for n, p in m.named_parameters():
                if n in grads:
                    p.grad = grads[n].clone()
        fused.step()
        loop.step()
    for (n, p), q in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=n)
    assert max((p - q).abs().max().item() for p, q in zip(model.parameters(), start.parameters())) > 1e-2
    assert fused_step_supported([{"params": [torch.zeros(2, dtype=torch.int64)]}]) is None
    cfg.merge_from_list(["SOLVER.FUSED_OPTIMIZER", False])  # torch's per-parameter loops, as upstream
    assert all(not g["fused"] for g in build_optimizer(cfg, model).param_groups)
    cfg.SOLVER.FUSED_OPTIMIZER = "yes"  # (merge_from_list already refuses a str for a bool key)
    with pytest.raises(ConfigError, match="SOLVER.FUSED_OPTIMIZER='yes'"):
        validate_config(cfg)

def _sched_cfg(**kw):
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.BASE_LR", 0.1, "SOLVER.MAX_ITER", 100, "SOLVER.WARMUP_ITERS", 10,
                         "SOLVER.WARMUP_FACTOR", 0.01])
    for k, v in kw.items():
        cfg.merge_from_list([k, v])
    return cfg


def _lrs(cfg, n=100, groups=(1.0,)):
    params = [nn.Parameter(torch.zeros(1)) for _ in groups]
    opt = torch.optim.SGD([{"params": [p], "lr": 0.1 * m} for p, m in zip(params, groups)], lr=0.1)
    sched = build_lr_scheduler(cfg, opt)
    out = []
    for _ in range(n):
        out.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return out, opt, sched


def test_warmup_poly_lr_by_hand():
    cfg = _sched_cfg(**{"SOLVER.LR_SCHEDULER_NAME": "WarmupPolyLR", "SOLVER.POLY_LR_POWER": 0.9})
    lrs, opt, sched = _lrs(cfg, groups=(1.0, 0.1))
    # detectron2 DeepLab WarmupPolyLR: base * warmup(it) * (1 - it / max_iter) ** power
    for it in (0, 5, 9):
        warm = 0.01 * (1 - it / 10) + it / 10
        assert lrs[it][0] == pytest.approx(0.1 * warm * (1 - it / 100) ** 0.9, rel=1e-9)
    for it in (10, 50, 99):
        assert lrs[it][0] == pytest.approx(0.1 * (1 - it / 100) ** 0.9, rel=1e-9)
        assert lrs[it][1] == pytest.approx(0.01 * (1 - it / 100) ** 0.9, rel=1e-9)  # group multipliers kept
    assert lrs[0][0] == pytest.approx(0.001)

    # state round trip: a scheduler rebuilt from the state continues identically
    _, opt, sched = _lrs(cfg, n=50, groups=(1.0, 0.1))
    state, opt_state = sched.state_dict(), opt.state_dict()
    assert state == {"base_lrs": pytest.approx([0.1, 0.01]), "last_epoch": 50}
    params = [nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))]
    opt2 = torch.optim.SGD([{"params": [params[0]], "lr": 0.5}, {"params": [params[1]], "lr": 0.5}], lr=0.5)
    sched2 = build_lr_scheduler(cfg, opt2)
    opt2.load_state_dict(opt_state)
    sched2.load_state_dict(state)
    for _ in range(20):
        for o, s in ((opt, sched), (opt2, sched2)):
            o.step()
            s.step()
        assert [g["lr"] for g in opt2.param_groups] == [g["lr"] for g in opt.param_groups]
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.1 * (1 - 70 / 100) ** 0.9)

    ending = _sched_cfg(**{"SOLVER.LR_SCHEDULER_NAME": "WarmupPolyLR", "SOLVER.POLY_LR_CONSTANT_ENDING": 0.2})
    lrs_end, _, _ = _lrs(ending)
    assert lrs_end[98][0] == pytest.approx(0.1 * 0.2)  # (1 - 0.98) ** 0.9 < 0.2
    assert lrs_end[50][0] == pytest.approx(0.1 * 0.5**0.9)


def test_mmseg_linear_warmup_and_poly_are_warmup_poly_lr():
    """UPerNet-Swin's mmcv schedule (poly, power 1.0, min_lr 0, warmup "linear" over 1500 iterations from ratio
    1e-6, 160k iterations): mmcv's lr is poly(it) * (1 - (1 - it / 1500) * (1 - 1e-6)) before 1500, poly(it) after."""
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.LR_SCHEDULER_NAME", "WarmupPolyLR", "SOLVER.BASE_LR", 6e-5, "SOLVER.MAX_ITER",
                         160000, "SOLVER.WARMUP_ITERS", 1500, "SOLVER.WARMUP_FACTOR", 1e-6, "SOLVER.WARMUP_METHOD",
                         "linear", "SOLVER.POLY_LR_POWER", 1.0, "SOLVER.BASE_LR_END", 0.0])
    sched = build_lr_scheduler(cfg, torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=6e-5))
    for it in (0, 1, 750, 1499):
        mmcv = (1 - it / 160000) * (1 - (1 - it / 1500) * (1 - 1e-6))
        assert sched.multiplier_at(it) == pytest.approx(mmcv, rel=1e-12)
    assert sched.multiplier_at(0) == pytest.approx(1e-6)
    assert sched.multiplier_at(750) == pytest.approx(0.9953125 * 0.5000005, rel=1e-12)
    assert [sched.multiplier_at(it) for it in (1500, 80000, 159999)] == pytest.approx([0.990625, 0.5, 1 / 160000])


def test_adamw_is_mmcvs_with_decoupled_decay_per_group():
    """torch's AdamW defaults are mmcv's (betas (0.9, 0.999), eps 1e-8); with zero gradients one step only decays:
    p <- p * (1 - lr * weight_decay), each group with its own weight decay."""
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.OPTIMIZER", "ADAMW", "SOLVER.BASE_LR", 0.1, "SOLVER.WEIGHT_DECAY", 0.5,
                         "SOLVER.BACKBONE_MULTIPLIER", 1.0, "SOLVER.PARAM_RULES", [["bias", 1.0, 0.0]]])
    model = nn.Linear(1, 1)
    nn.init.constant_(model.weight, 2.0)
    nn.init.constant_(model.bias, 3.0)
    opt = build_optimizer(cfg, model)
    assert all(g["betas"] == (0.9, 0.999) and g["eps"] == 1e-8 for g in opt.param_groups)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    assert float(model.weight) == pytest.approx(2.0 * (1 - 0.1 * 0.5)) and float(model.bias) == 3.0


def test_multistep_and_cosine_schedules():
    cfg = _sched_cfg(**{"SOLVER.LR_SCHEDULER_NAME": "WarmupMultiStepLR", "SOLVER.STEPS": "(40, 70)",
                        "SOLVER.GAMMA": 0.1})
    lrs, _, _ = _lrs(cfg)
    # detectron2's warmup: linear from 0.01 x lr to the schedule's value at the end of warmup
    assert lrs[0][0] == pytest.approx(0.001)
    assert lrs[5][0] == pytest.approx(0.001 + (0.1 - 0.001) * 0.5)
    assert [lrs[i][0] for i in (10, 39, 40, 69, 70, 99)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    cos = _sched_cfg(**{"SOLVER.LR_SCHEDULER_NAME": "WarmupCosineLR", "SOLVER.WARMUP_ITERS": 0})
    lrs, _, _ = _lrs(cos)
    for it in (0, 30, 99):
        assert lrs[it][0] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * it / 100)))
    with pytest.raises(ValueError, match="WarmupPolyLR"):
        _lrs(_sched_cfg(**{"SOLVER.LR_SCHEDULER_NAME": "OneCycle"}))


def test_gradient_clipping():
    def params():
        ps = [nn.Parameter(torch.zeros(3)), nn.Parameter(torch.zeros(2))]
        ps[0].grad = torch.tensor([3.0, 0.0, 0.0])
        ps[1].grad = torch.tensor([0.0, 4.0])
        return ps

    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.CLIP_GRADIENTS.ENABLED", True, "SOLVER.CLIP_GRADIENTS.CLIP_TYPE", "full_model",
                         "SOLVER.CLIP_GRADIENTS.CLIP_VALUE", 0.5])
    ps = params()
    assert clip_gradients(cfg, ps) == pytest.approx(5.0)  # norm before clipping
    assert torch.cat([p.grad for p in ps]).norm().item() == pytest.approx(0.5, rel=1e-5)
    assert ps[0].grad[0].item() == pytest.approx(0.3, rel=1e-5)  # direction kept

    cfg.merge_from_list(["SOLVER.CLIP_GRADIENTS.CLIP_TYPE", "norm", "SOLVER.CLIP_GRADIENTS.CLIP_VALUE", 2.0])
    ps = params()
    clip_gradients(cfg, ps)
    assert [p.grad.norm().item() for p in ps] == pytest.approx([2.0, 2.0], rel=1e-5)
    cfg.merge_from_list(["SOLVER.CLIP_GRADIENTS.CLIP_TYPE", "value", "SOLVER.CLIP_GRADIENTS.CLIP_VALUE", 1.0])
    ps = params()
    clip_gradients(cfg, ps)
    assert ps[0].grad.tolist() == [1.0, 0.0, 0.0] and ps[1].grad.tolist() == [0.0, 1.0]
    cfg.merge_from_list(["SOLVER.CLIP_GRADIENTS.ENABLED", False])
    assert build_gradient_clipper(cfg) is None
    cfg.merge_from_list(["SOLVER.CLIP_GRADIENTS.ENABLED", True, "SOLVER.CLIP_GRADIENTS.CLIP_TYPE", "elementwise"])
    with pytest.raises(ValueError, match="full_model"):
        build_gradient_clipper(cfg)


# --------------------------------------------------------------------------------------------------
# training loop
# --------------------------------------------------------------------------------------------------
def test_training_lowers_the_loss_evaluates_and_writes_metrics(tmp_path):
    cfg = _cfg(tmp_path, max_iter=40, **{"DATASETS.TEST": f"('{TEST_SET}',)", "TEST.EVAL_PERIOD": 20})
    trainer = ToyTrainer(cfg)
    results = trainer.train()
    losses = [v for v, _ in trainer.storage.history("loss_x").values()]
    assert len(losses) == 40
    assert np.mean(losses[-5:]) < 0.1 * np.mean(losses[:5])
    total = trainer.storage.history("total_loss").latest()
    assert total == pytest.approx(losses[-1] + trainer.storage.history("loss_aux").latest(), rel=1e-6)
    assert trainer.storage.history("lr").values()[0][0] == pytest.approx(0.05)

    # evaluation at iteration 19 (period) and after the last one, stored as unsmoothed scalars
    mae = trainer.storage.history("toy/mae").values()
    assert [it for _, it in mae] == [19, 39]
    assert results == {"toy": {"mae": pytest.approx(mae[-1][0]), "IoU-a": 1.0}}
    saved = json.loads((tmp_path / "inference" / TEST_SET / "evaluation_results.json").read_text())
    assert saved["toy"]["mae"] == pytest.approx(mae[-1][0])

    lines = [json.loads(x) for x in (tmp_path / "metrics.json").read_text().splitlines()]
    assert [d["iteration"] for d in lines if "loss_x" in d] == [19, 39]
    assert [d["iteration"] for d in lines if "toy/mae" in d] == [19, 39]
    last = [d for d in lines if "loss_x" in d][-1]
    assert last["loss_x"] == pytest.approx(float(np.median(losses[-20:])))  # smoothed: median of 20
    assert {"lr", "time", "data_time", "total_loss", "grad_norm"} <= set(last)
    assert list(tmp_path.glob("events.out.tfevents.*"))
    assert (tmp_path / "model_final.pth").is_file()
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"


def test_nan_loss_stops_with_a_clear_error(tmp_path):
    class NanTrainer(ToyTrainer):
        nan_at = 2

    with pytest.raises(FloatingPointError, match=r"iteration 2: loss_aux=.*loss_x=nan.*toy_1_"):
        NanTrainer(_cfg(tmp_path, max_iter=5)).train()
    assert not (tmp_path / "model_final.pth").exists()


class Interrupt(HookBase):
    def __init__(self, at):
        self.at = at

    def before_step(self):
        if self.trainer.iter == self.at:
            raise KeyboardInterrupt


def _assert_same_state(a, b):
    for (name, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(x, y), name
    sa, sb = a.optimizer.state_dict(), b.optimizer.state_dict()
    for k in sa["state"]:
        for key in sa["state"][k]:
            assert torch.equal(torch.as_tensor(sa["state"][k][key]), torch.as_tensor(sb["state"][k][key]))
    assert [g["lr"] for g in sa["param_groups"]] == [g["lr"] for g in sb["param_groups"]]


def test_exact_resume_from_a_periodic_checkpoint(tmp_path):
    extra = {"SOLVER.CHECKPOINT_PERIOD": 3}
    full = ToyTrainer(_cfg(tmp_path / "full", max_iter=6, **extra))
    full.train()

    interrupted = ToyTrainer(_cfg(tmp_path / "half", max_iter=6, **extra))
    interrupted.register_hooks([Interrupt(3)])
    with pytest.raises(KeyboardInterrupt):
        interrupted.train()
    assert (tmp_path / "half" / "last_checkpoint").read_text() == "model_0000002.pth"
    assert not (tmp_path / "half" / "model_final.pth").exists()

    resumed = ToyTrainer(_cfg(tmp_path / "half", max_iter=6, **extra))
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 3
    resumed.train()
    _assert_same_state(full, resumed)
    full_losses = [v for v, _ in full.storage.history("loss_x").values()][3:]
    assert [v for v, _ in resumed.storage.history("loss_x").values()] == full_losses

    # without --resume the same directory starts over from MODEL.WEIGHTS (none): iteration 0
    fresh = ToyTrainer(_cfg(tmp_path / "half", max_iter=6, **extra))
    fresh.resume_or_load(resume=False)
    assert fresh.start_iter == 0


def test_exact_resume_off_the_checkpoint_grid(tmp_path):
    """model_final at iteration 5 (period 3), then MAX_ITER raised to 8: the data stream replays the
    two batches of its period and the run matches an uninterrupted 8-iteration run."""
    extra = {"SOLVER.CHECKPOINT_PERIOD": 3, "SOLVER.LR_SCHEDULER_NAME": "WarmupMultiStepLR", "SOLVER.STEPS": "()"}
    full = ToyTrainer(_cfg(tmp_path / "full", max_iter=8, **extra))
    full.train()
    first = ToyTrainer(_cfg(tmp_path / "ext", max_iter=5, **extra))
    first.train()
    extended = ToyTrainer(_cfg(tmp_path / "ext", max_iter=8, **extra))
    extended.resume_or_load(resume=True)
    assert extended.start_iter == 5
    extended.train()
    _assert_same_state(full, extended)


def test_periodic_evaluation_does_not_change_training(tmp_path):
    plain = ToyTrainer(_cfg(tmp_path / "plain", max_iter=6))
    plain.train()
    evaluated = ToyTrainer(_cfg(tmp_path / "eval", max_iter=6, **{"DATASETS.TEST": f"('{TEST_SET}',)",
                                                                  "TEST.EVAL_PERIOD": 2}))
    evaluated.train()
    assert [it for _, it in evaluated.storage.history("toy/mae").values()] == [1, 3, 5]
    _assert_same_state(plain, evaluated)


def test_auto_scaling_and_amp_off_on_cpu(tmp_path, caplog):
    cfg = _cfg(tmp_path, max_iter=100, **{"SOLVER.REFERENCE_WORLD_SIZE": 4, "SOLVER.IMS_PER_BATCH": 16,
                                          "SOLVER.STEPS": "(60, 80)", "SOLVER.AMP.ENABLED": True})
    with caplog.at_level(logging.INFO, logger="mask2former_rankseg"):
        trainer = ToyTrainer(cfg)
    s = trainer.cfg.SOLVER  # one process instead of four: linear scaling, as detectron2
    assert (s.IMS_PER_BATCH, s.MAX_ITER, s.STEPS, s.REFERENCE_WORLD_SIZE) == (4, 400, (240, 320), 1)
    assert trainer.max_iter == 400
    assert math.isclose(s.BASE_LR, 0.05 / 4)
    assert cfg.SOLVER.MAX_ITER == 100  # the given config is not modified
    assert trainer.amp is False and not trainer.scaler.is_enabled()
    assert "AMP is for CUDA only" in caplog.text


def test_evaluator_for_unknown_type_is_a_clear_error():
    with pytest.raises(ValueError, match=r"evaluator_type='toy'.*sem_seg"):
        Trainer.build_evaluator(get_cfg(), TEST_SET)


def _two_process_main(out_dir):
    from mask2former_rankseg.utils import comm

    trainer = ToyTrainer(_cfg(out_dir, max_iter=4, **{"SOLVER.CHECKPOINT_PERIOD": 2}))
    trainer.train()
    torch.save({k: v.clone() for k, v in trainer.model.module.state_dict().items()},
               f"{out_dir}/rank{comm.get_rank()}.pt")


@pytest.mark.slow
def test_two_cpu_processes_train_in_sync(tmp_path):
    launch(_two_process_main, 2, dist_url="auto", args=(str(tmp_path),))
    a, b = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)  # DDP kept the replicas identical
    init = ToyModel().state_dict()
    assert not torch.equal(a["out.weight"], init["out.weight"])  # and they trained
    ckpt = torch.load(tmp_path / "model_0000001.pth", weights_only=True)
    assert ckpt["iteration"] == 1 and len(ckpt["rng"]) == 2  # RNG states of both ranks
    assert (tmp_path / "model_final.pth").is_file()


def test_cli_parser():
    args = default_argument_parser().parse_args(
        ["--config-file", "c.yaml", "--eval-only", "--resume", "--num-gpus", "2", "--num-machines", "2",
         "--machine-rank", "1", "--dist-url", "tcp://127.0.0.1:1234", "SOLVER.BASE_LR", "0.1", "OUTPUT_DIR", "o"]
    )
    assert args.config_file == "c.yaml" and args.eval_only and args.resume
    assert (args.num_gpus, args.num_machines, args.machine_rank) == (2, 2, 1)
    assert args.dist_url == "tcp://127.0.0.1:1234"
    assert args.opts == ["SOLVER.BASE_LR", "0.1", "OUTPUT_DIR", "o"]
    defaults = default_argument_parser().parse_args(["--config-file", "c.yaml"])
    assert (defaults.num_gpus, defaults.num_machines, defaults.machine_rank) == (1, 1, 0)
    assert not defaults.eval_only and not defaults.resume and defaults.dist_url == "auto" and defaults.opts == []


def test_train_net_without_a_config_file_is_a_usage_error(train_net, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_net.cli([])
    assert exit_info.value.code == 2 and "--config-file" in capsys.readouterr().err


def test_eval_only_without_weights_warns_loudly_unless_asked_for(caplog):
    cfg = get_cfg()
    assert cfg.MODEL.WEIGHTS == ""
    with caplog.at_level(logging.WARNING, logger="mask2former_rankseg.engine.defaults"):
        assert warn_if_random_weights(cfg, False, "--random-weights")
        assert not warn_if_random_weights(cfg, True, "--random-weights")
        cfg.MODEL.WEIGHTS = "model_final.pth"
        assert not warn_if_random_weights(cfg, False, "--random-weights")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "RANDOMLY INITIALISED" in messages[0] and "--random-weights" in messages[0]
    assert default_argument_parser().parse_args(["--config-file", "c.yaml", "--eval-only", "--random-weights"]
                                                ).random_weights


def test_train_net_setup_merges_validates_and_saves_the_config(tmp_path, restore_package_logger):
    import train_net

    config = REPO / "configs" / "synthetic" / "maskformer2_R18_synthetic-rankseg.yaml"
    args = default_argument_parser().parse_args(
        ["--config-file", str(config), "OUTPUT_DIR", str(tmp_path / "out"), "SOLVER.MAX_ITER", "7", "SEED", "5"])
    cfg = train_net.setup(args)
    assert cfg.is_frozen() and cfg.SOLVER.MAX_ITER == 7 and cfg.MODEL.RANKSEG.FLAG
    saved = get_cfg()
    saved.merge_from_file(str(tmp_path / "out" / "config.yaml"))
    assert saved == cfg
    assert "Running with full config" in (tmp_path / "out" / "log.txt").read_text()
    assert not list((tmp_path / "out").glob(".*"))  # the config was written atomically, no temp file left
    first = torch.rand(3)
    default_setup(cfg, args)  # seeds SEED + rank again: the same numbers
    assert torch.equal(torch.rand(3), first)

    bad = default_argument_parser().parse_args(["--config-file", str(config), "MODEL.RANKSEG.TOPK", "1000"])
    with pytest.raises(ConfigError, match="TOPK=1000"):
        train_net.setup(bad)


def test_tensorboard_is_an_optional_extra(tmp_path, monkeypatch, caplog):
    """With the tensorboard package the default writers include event files; without it, a log line says how to
    get them and training keeps the console and metrics.json writers."""
    monkeypatch.setattr(hooks, "tensorboard_available", lambda: False)
    with caplog.at_level(logging.INFO, logger="mask2former_rankseg.engine.hooks"):
        writers = hooks.default_writers(str(tmp_path), max_iter=10)
    assert [type(w) for w in writers] == [CommonMetricPrinter, JSONWriter]
    assert any("pip install tensorboard" in r.getMessage() for r in caplog.records)
    for w in writers:
        w.close()
    monkeypatch.setattr(hooks, "tensorboard_available", lambda: True)
    writers = hooks.default_writers(str(tmp_path / "tb"), max_iter=10)
    assert isinstance(writers[-1], TensorboardXWriter)
    for w in writers:
        w.close()

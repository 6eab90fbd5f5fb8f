"""Engine: parameter groups, LR schedule, clipping, the training loop, NaN stop, exact resume, CLI."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from mask2former_rankseg.config import get_cfg
from mask2former_rankseg.engine import (
    HookBase,
    Trainer,
    build_lr_scheduler,
    build_optimizer,
    clip_gradients,
    default_argument_parser,
)


class ToyModel(nn.Module):
    """Names like the real model: backbone, a norm, an embedding, ml_head.cls_emb."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Linear(4, 8)
        self.norm = nn.LayerNorm(8)
        self.query = nn.Embedding(3, 8)
        self.ml_head = nn.Module()
        self.ml_head.proj = nn.Linear(8, 8)
        self.ml_head.cls_emb = nn.Parameter(torch.zeros(1, 2, 8))
        self.out = nn.Linear(8, 1)
        self.nan = False

    def forward(self, batch):
        x = torch.stack([b["x"] for b in batch])
        y = torch.stack([b["y"] for b in batch])
        h = self.ml_head.proj(self.norm(self.backbone(x))) + self.query.weight.mean(0) + self.ml_head.cls_emb.mean()
        noise = torch.rand(()) * 1e-3  # the model consumes torch RNG, like point sampling does
        loss = ((self.out(h).squeeze(-1) - y) ** 2).mean() + noise
        if self.nan:
            loss = loss * float("nan")
        return {"loss_x": loss}


class ToyLoader:
    """Infinite batches whose content uses numpy's global RNG (like augmentations)."""

    def __init__(self, seed):
        self.seed = seed

    def __iter__(self):
        rng = np.random.RandomState(self.seed)
        np.random.seed(self.seed)  # as the real loader does with NUM_WORKERS=0
        w = torch.tensor([1.0, -2.0, 0.5, 3.0])
        while True:
            batch = []
            for _ in range(4):
                x = torch.from_numpy(rng.randn(4).astype(np.float32)) + float(np.random.rand()) * 1e-3
                batch.append({"x": x, "y": (x * w).sum()})
            yield batch


class ToyTrainer(Trainer):
    nan = False

    @classmethod
    def build_model(cls, cfg):
        torch.manual_seed(0)
        model = ToyModel()
        model.nan = cls.nan
        return model

    @classmethod
    def build_train_loader(cls, cfg):
        return ToyLoader(0)


def _cfg(tmp_path, max_iter=20, **extra):
    cfg = get_cfg()
    cfg.merge_from_list([
        "SOLVER.MAX_ITER", max_iter, "SOLVER.BASE_LR", 0.05, "SOLVER.LR_SCHEDULER_NAME", "WarmupPolyLR",
        "SOLVER.WARMUP_ITERS", 0, "SOLVER.CHECKPOINT_PERIOD", 1000, "TEST.EVAL_PERIOD", 0, "DATASETS.TEST", "()",
        "OUTPUT_DIR", str(tmp_path), "MODEL.DEVICE", "cpu", "SEED", 0,
    ])
    for k, v in extra.items():
        cfg.merge_from_list([k, v])
    return cfg


def test_param_groups():
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.BASE_LR", 1.0, "SOLVER.BACKBONE_MULTIPLIER", 0.1, "SOLVER.MLHEAD_MULTIPLIER", 0.5,
                         "SOLVER.WEIGHT_DECAY", 0.05, "SOLVER.WEIGHT_DECAY_NORM", 0.0,
                         "SOLVER.WEIGHT_DECAY_EMBED", 0.01])
    model = ToyModel()
    opt = build_optimizer(cfg, model)
    assert isinstance(opt, torch.optim.AdamW)
    hyper = {}
    for g in opt.param_groups:
        for p in g["params"]:
            hyper[id(p)] = (g["lr"], g["weight_decay"])
    assert hyper[id(model.backbone.weight)] == (pytest.approx(0.1), 0.05)
    assert hyper[id(model.norm.weight)] == (1.0, 0.0)
    assert hyper[id(model.query.weight)] == (1.0, 0.01)
    assert hyper[id(model.ml_head.proj.weight)] == (0.5, 0.05)
    assert hyper[id(model.ml_head.cls_emb)] == (0.5, 0.01)
    assert hyper[id(model.out.weight)] == (1.0, 0.05)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))


def test_warmup_poly_lr_by_hand():
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.BASE_LR", 0.1, "SOLVER.MAX_ITER", 100, "SOLVER.LR_SCHEDULER_NAME", "WarmupPolyLR",
                         "SOLVER.WARMUP_ITERS", 10, "SOLVER.WARMUP_FACTOR", 0.01, "SOLVER.POLY_LR_POWER", 0.9])
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = build_lr_scheduler(cfg, opt)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1 * 0.01)
    # linear warmup from 0.01 x lr(0) to the poly value at iteration 10
    end = 0.1 * (1 - 10 / 100) ** 0.9
    assert lrs[5] == pytest.approx(0.001 + (end - 0.001) * 5 / 10)
    for it in (10, 50, 99):
        assert lrs[it] == pytest.approx(0.1 * (1 - it / 100) ** 0.9)
    state = sched.state_dict()
    again = build_lr_scheduler(cfg, opt)
    again.load_state_dict(state)
    assert again.last_epoch == sched.last_epoch


def test_full_model_clipping():
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.CLIP_GRADIENTS.ENABLED", True, "SOLVER.CLIP_GRADIENTS.CLIP_TYPE", "full_model",
                         "SOLVER.CLIP_GRADIENTS.CLIP_VALUE", 0.5])
    params = [nn.Parameter(torch.zeros(3)), nn.Parameter(torch.zeros(2))]
    params[0].grad = torch.tensor([3.0, 0.0, 0.0])
    params[1].grad = torch.tensor([0.0, 4.0])
    assert clip_gradients(cfg, params) == pytest.approx(5.0)
    total = torch.cat([p.grad for p in params]).norm()
    assert total.item() == pytest.approx(0.5, rel=1e-5)


def test_training_lowers_the_loss_and_writes_metrics(tmp_path):
    trainer = ToyTrainer(_cfg(tmp_path, max_iter=40))
    trainer.train()
    history = trainer.storage.history("loss_x")
    values = [v for v, _ in history._values]
    assert np.mean(values[-5:]) < 0.4 * np.mean(values[:5])
    lines = [json.loads(x) for x in (tmp_path / "metrics.json").read_text().splitlines()]
    assert lines[-1]["iteration"] == 39 and "loss_x" in lines[-1] and "lr" in lines[-1]
    assert list(tmp_path.glob("events.out.tfevents.*"))
    assert (tmp_path / "model_final.pth").is_file()


def test_nan_loss_stops_with_a_clear_error(tmp_path):
    class NanTrainer(ToyTrainer):
        nan = True

    with pytest.raises(FloatingPointError, match="iteration 0.*loss_x"):
        NanTrainer(_cfg(tmp_path, max_iter=5)).train()


def test_exact_resume(tmp_path):
    full = ToyTrainer(_cfg(tmp_path / "full", max_iter=6))
    full.train()

    class Interrupt(HookBase):
        def before_step(self):
            if self.trainer.iter == 3:
                raise KeyboardInterrupt

    interrupted = ToyTrainer(_cfg(tmp_path / "half", max_iter=6, **{"SOLVER.CHECKPOINT_PERIOD": 3}))
    interrupted.register_hooks([Interrupt()])
    with pytest.raises(KeyboardInterrupt):
        interrupted.train()
    assert (tmp_path / "half" / "last_checkpoint").read_text() == "model_0000002.pth"

    resumed = ToyTrainer(_cfg(tmp_path / "half", max_iter=6, **{"SOLVER.CHECKPOINT_PERIOD": 3}))
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 3
    resumed.train()
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert resumed.optimizer.param_groups[0]["lr"] == full.optimizer.param_groups[0]["lr"]


def test_cli_parser():
    args = default_argument_parser().parse_args(
        ["--config-file", "c.yaml", "--eval-only", "--resume", "--num-gpus", "2", "--num-machines", "1",
         "--machine-rank", "0", "--dist-url", "tcp://127.0.0.1:1234", "SOLVER.BASE_LR", "0.1", "OUTPUT_DIR", "o"]
    )
    assert args.config_file == "c.yaml" and args.eval_only and args.resume and args.num_gpus == 2
    assert args.dist_url == "tcp://127.0.0.1:1234"
    assert args.opts == ["SOLVER.BASE_LR", "0.1", "OUTPUT_DIR", "o"]

"""``Trainer``: iteration-based training of a model built from a config, with evaluation and resume."""

from __future__ import annotations

import logging
import random
import time
from collections import OrderedDict
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from ..utils import comm
from ..utils.events import EventStorage
from . import hooks as hooks_module
from .checkpoint import Checkpointer
from .optim import build_lr_scheduler, build_optimizer, clip_gradients

logger = logging.getLogger(__name__)


class Trainer:
    """Trains ``cfg``'s model on ``cfg.DATASETS.TRAIN`` for ``SOLVER.MAX_ITER`` iterations.

    The ``build_*`` classmethods are the extension points (detectron2 style). Each iteration: next batch,
    losses, NaN/inf check, backward (AMP on CUDA when ``SOLVER.AMP.ENABLED``), gradient clipping,
    optimizer and scheduler step, hooks (checkpoints, evaluation, writers).
    """

    def __init__(self, cfg):
        self.cfg = cfg
        model = self.build_model(cfg)
        self.optimizer = self.build_optimizer(cfg, model)
        self.scheduler = self.build_lr_scheduler(cfg, self.optimizer)
        self.device = next(model.parameters()).device
        if comm.get_world_size() > 1:
            model = nn.parallel.DistributedDataParallel(
                model, device_ids=[comm.get_local_rank()] if self.device.type == "cuda" else None,
                find_unused_parameters=False,
            )
        self.model = model
        self.amp = bool(cfg.SOLVER.AMP.ENABLED) and self.device.type == "cuda"
        if cfg.SOLVER.AMP.ENABLED and not self.amp:
            logger.info("SOLVER.AMP.ENABLED is set but training runs on %s: AMP is disabled.", self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.checkpointer = Checkpointer(
            model, cfg.OUTPUT_DIR, save_to_disk=comm.is_main_process(),
            optimizer=self.optimizer, scheduler=self.scheduler, scaler=self.scaler,
        )
        self.start_iter = 0
        self.iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self._rng_state: Optional[Dict] = None
        self._hooks: List[hooks_module.HookBase] = []
        self.register_hooks(self.build_hooks())

    # builders ------------------------------------------------------------------------------------
    @classmethod
    def build_model(cls, cfg) -> nn.Module:
        from ..modeling import build_model

        model = build_model(cfg)
        device = cfg.MODEL.DEVICE
        if device.startswith("cuda") and not torch.cuda.is_available():
            logger.warning("MODEL.DEVICE=%s but CUDA is not available: using the CPU.", device)
            device = "cpu"
        if device.startswith("cuda") and comm.get_world_size() > 1:
            device = f"cuda:{comm.get_local_rank()}"
        return model.to(device)

    @classmethod
    def build_optimizer(cls, cfg, model: nn.Module) -> torch.optim.Optimizer:
        return build_optimizer(cfg, model)

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer: torch.optim.Optimizer):
        return build_lr_scheduler(cfg, optimizer)

    @classmethod
    def build_train_loader(cls, cfg):
        from ..data import MaskFormerSemanticDatasetMapper, build_detection_train_loader

        name = cfg.INPUT.DATASET_MAPPER_NAME
        if name != "mask_former_semantic":
            raise ValueError(
                f"INPUT.DATASET_MAPPER_NAME={name!r} is not supported yet; supported: 'mask_former_semantic'."
            )
        return build_detection_train_loader(cfg, MaskFormerSemanticDatasetMapper.from_config(cfg, True))

    @classmethod
    def build_test_loader(cls, cfg, dataset_name: str):
        from ..data import build_detection_test_loader

        return build_detection_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name: str, output_folder: Optional[str] = None):
        from ..data import MetadataCatalog
        from ..evaluation import DatasetEvaluators, RankSegEvaluator, SemSegEvaluator

        evaluator_type = MetadataCatalog.get(dataset_name).get("evaluator_type")
        if evaluator_type != "sem_seg":
            raise ValueError(
                f"Dataset {dataset_name!r} has evaluator_type {evaluator_type!r}; supported: 'sem_seg'."
            )
        evaluators = [SemSegEvaluator(dataset_name, distributed=True, output_dir=output_folder)]
        if cfg.MODEL.RANKSEG.FLAG and not cfg.MODEL.RANKSEG.USE_GT:
            evaluators.append(RankSegEvaluator(dataset_name, distributed=True, output_dir=output_folder))
        return DatasetEvaluators(evaluators)

    def build_hooks(self) -> List[hooks_module.HookBase]:
        cfg = self.cfg
        out = [
            hooks_module.IterationTimer(),
            hooks_module.LRScheduler(),
            hooks_module.PeriodicCheckpointer(self.checkpointer, cfg.SOLVER.CHECKPOINT_PERIOD, self.max_iter),
            hooks_module.EvalHook(cfg.TEST.EVAL_PERIOD, lambda: self.test(self.cfg, self.model), self.max_iter),
        ]
        if comm.is_main_process():
            out.append(hooks_module.PeriodicWriter(hooks_module.default_writers(cfg.OUTPUT_DIR, self.max_iter)))
        return out

    def register_hooks(self, new_hooks: Sequence[hooks_module.HookBase]) -> None:
        for h in new_hooks:
            h.trainer = self
            self._hooks.append(h)

    # checkpoints ---------------------------------------------------------------------------------
    def save_checkpoint(self, name: str) -> None:
        self.checkpointer.save(name, iteration=self.iter, rng=_capture_rng())

    def resume_or_load(self, resume: bool = True) -> None:
        """With ``resume`` and a ``last_checkpoint`` in OUTPUT_DIR: continue exactly from it. Otherwise load
        ``MODEL.WEIGHTS`` (weights only) and start at iteration 0."""
        data = self.checkpointer.resume_or_load(self.cfg.MODEL.WEIGHTS, resume=resume)
        if resume and "iteration" in data:
            self.start_iter = int(data["iteration"]) + 1
            self._rng_state = data.get("rng")
            logger.info("Resuming from iteration %d", self.start_iter)

    # training ------------------------------------------------------------------------------------
    def train(self) -> Optional[Dict]:
        """Run the loop from ``start_iter`` to ``max_iter``; returns the final evaluation results."""
        logger.info("Starting training from iteration %d", self.start_iter)
        data_iter = self._data_iterator()
        self.iter = self.start_iter
        with EventStorage(self.start_iter) as self.storage:
            for h in self._hooks:
                h.before_train()
            try:
                for iteration in range(self.start_iter, self.max_iter):
                    self.iter = self.storage.iter = iteration
                    for h in self._hooks:
                        h.before_step()
                    self.run_step(data_iter)
                    for h in self._hooks:
                        h.after_step()
                # after the loop self.iter is the last iteration run
            finally:
                for h in self._hooks:
                    h.after_train()
        eval_hook = next((h for h in self._hooks if isinstance(h, hooks_module.EvalHook)), None)
        return eval_hook.latest_results if eval_hook is not None else None

    def _data_iterator(self) -> Iterator:
        """The training batches; on resume the stream is fast-forwarded to ``start_iter`` (exact resume:
        the same images and augmentations as an uninterrupted run) and the RNG states are restored."""
        iterator = iter(self.build_train_loader(self.cfg))
        if self.start_iter > 0:
            logger.info("Fast-forwarding the data stream by %d batches for an exact resume", self.start_iter)
            for _ in range(self.start_iter):
                next(iterator)
        if self._rng_state is not None:
            _restore_rng(self._rng_state)
        return iterator

    def run_step(self, data_iter: Iterator) -> None:
        start = time.perf_counter()
        batch = next(data_iter)
        data_time = time.perf_counter() - start
        with torch.autocast(device_type=self.device.type, enabled=self.amp):
            loss_dict = self.model(batch)
        losses = sum(loss_dict.values())
        if not torch.isfinite(losses).all():
            raise FloatingPointError(
                f"Loss became infinite or NaN at iteration {self.iter}: "
                + ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in loss_dict.items())
                + ". Lower SOLVER.BASE_LR or enable SOLVER.CLIP_GRADIENTS."
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(losses).backward()
        self.scaler.unscale_(self.optimizer)
        clip_gradients(self.cfg, self.model.parameters())
        self.scaler.step(self.optimizer)
        self.scaler.update()

        reduced = comm.reduce_dict({k: v.detach() for k, v in loss_dict.items()})
        if comm.is_main_process():
            total = sum(float(v) for v in reduced.values())
            self.storage.put_scalars(total_loss=total, **{k: float(v) for k, v in reduced.items()})
            self.storage.put_scalar("data_time", data_time, smoothing_hint=False)

    # evaluation ----------------------------------------------------------------------------------
    @classmethod
    def test(cls, cfg, model: nn.Module, evaluators: Optional[Sequence] = None) -> Dict:
        """Evaluate ``model`` on every ``DATASETS.TEST``; returns ``{task: metrics}`` (one dataset) or
        ``{dataset: {task: metrics}}`` (several). Results go to ``OUTPUT_DIR/inference/<dataset>/``."""
        from ..evaluation import inference_on_dataset, write_results_json

        results = OrderedDict()
        for idx, name in enumerate(cfg.DATASETS.TEST):
            out_dir = str(Path(cfg.OUTPUT_DIR) / "inference" / name)
            evaluator = evaluators[idx] if evaluators is not None else cls.build_evaluator(cfg, name, out_dir)
            res = inference_on_dataset(model, cls.build_test_loader(cfg, name), evaluator)
            results[name] = res
            if comm.is_main_process():
                write_results_json(res, Path(out_dir) / "results.json")
                logger.info("Evaluation results for %s:\n%s", name, _format(res))
        if len(results) == 1:
            return results[cfg.DATASETS.TEST[0]]
        return results


def _format(results: Dict) -> str:
    from ..evaluation import format_results_table

    return format_results_table(results)


def _capture_rng() -> Dict:
    """RNG states as tensors and plain values, so the checkpoint loads with ``weights_only=True``."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: Dict) -> None:
    random.setstate(_to_tuple(state["python"]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_tuple(value):
    return tuple(_to_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


__all__ = ["Trainer"]

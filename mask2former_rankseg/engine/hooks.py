"""Training-loop hooks: timing, LR scheduling, periodic checkpoints, periodic evaluation, metric writers.

A hook sees the trainer as ``self.trainer`` (set when registered) and is called around training:
``before_train``, then ``before_step`` / ``after_step`` per iteration, then ``after_train`` (also when
training stops with an exception). ``trainer.iter`` is the current iteration; after a loop that ran to
the end it equals ``trainer.max_iter``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from ..utils import comm
from ..utils.events import CommonMetricPrinter, EventWriter, JSONWriter, TensorboardXWriter, tensorboard_available
from .defaults import capture_rng_state, restore_rng_state

__all__ = [
    "EvalHook",
    "HookBase",
    "IterationTimer",
    "LRScheduler",
    "PeriodicCheckpointer",
    "PeriodicWriter",
    "default_writers",
    "flatten_results",
]

logger = logging.getLogger(__name__)


class HookBase:
    """Base class of training hooks; every method is optional."""

    trainer: Any = None

    def before_train(self) -> None:
        pass

    def after_train(self) -> None:
        pass

    def before_step(self) -> None:
        pass

    def after_step(self) -> None:
        pass


def _finished(trainer) -> bool:
    return trainer.iter >= trainer.max_iter


class IterationTimer(HookBase):
    """Records each iteration's wall time as the scalar ``time`` and logs the total at the end."""

    def __init__(self):
        self._step_start = 0.0
        self._train_start = 0.0

    def before_train(self) -> None:
        self._train_start = time.perf_counter()

    def before_step(self) -> None:
        self._step_start = time.perf_counter()

    def after_step(self) -> None:
        self.trainer.storage.put_scalar("time", time.perf_counter() - self._step_start, smoothing_hint=False)

    def after_train(self) -> None:
        total = time.perf_counter() - self._train_start
        done = self.trainer.iter - self.trainer.start_iter
        if done > 0:
            logger.info("Total training time: %.1f s for %d iterations (%.4f s/it)", total, done, total / done)


class LRScheduler(HookBase):
    """Records the learning rate used by the step (the largest group lr, as detectron2) as ``lr`` and
    steps the scheduler after every iteration."""

    def after_step(self) -> None:
        lr = max(g["lr"] for g in self.trainer.optimizer.param_groups)
        self.trainer.storage.put_scalar("lr", lr, smoothing_hint=False)
        self.trainer.scheduler.step()


class PeriodicCheckpointer(HookBase):
    """Saves ``model_{iter:07d}`` after every ``period``-th iteration (if ``period > 0``) and
    ``model_final`` when training reaches ``max_iter``. Runs on every process (the RNG states of all
    ranks are gathered); only the main process writes."""

    def __init__(self, period: int, max_iter: int):
        self.period = int(period)
        self.max_iter = int(max_iter)

    def after_step(self) -> None:
        next_iter = self.trainer.iter + 1
        if self.period > 0 and next_iter % self.period == 0 and next_iter < self.max_iter:
            self.trainer.save_checkpoint(f"model_{self.trainer.iter:07d}")

    def after_train(self) -> None:
        if _finished(self.trainer) and self.trainer.iter > self.trainer.start_iter:
            self.trainer.save_checkpoint("model_final")


def flatten_results(results: Mapping, prefix: str = "") -> Dict[str, float]:
    """``{"sem_seg": {"mIoU": 1.0}}`` -> ``{"sem_seg/mIoU": 1.0}`` (numbers only)."""
    flat: Dict[str, float] = {}
    for k, v in results.items():
        name = f"{prefix}/{k}" if prefix else str(k)
        if isinstance(v, Mapping):
            flat.update(flatten_results(v, name))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            flat[name] = float(v)
        elif hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
            flat[name] = float(v.item())
    return flat


class EvalHook(HookBase):
    """Runs ``eval_function() -> {task: {metric: value}}`` every ``period`` iterations (if > 0) and when
    training reaches ``max_iter``; stores the numbers as scalars ``task/metric`` (not smoothed).

    The global RNG states are saved before and restored after the evaluation, so evaluating does not
    change the training that follows (and a resumed run matches an uninterrupted one).
    """

    def __init__(self, period: int, eval_function: Callable[[], Optional[Dict]], max_iter: int):
        self.period = int(period)
        self.eval_function = eval_function
        self.max_iter = int(max_iter)
        self.latest_results: Optional[Dict] = None

    def _evaluate(self) -> None:
        state = capture_rng_state()
        try:
            results = self.eval_function()
        finally:
            restore_rng_state(state)
        self.latest_results = results
        if comm.is_main_process() and results:
            flat = flatten_results(results)
            if flat:
                self.trainer.storage.put_scalars(smoothing_hint=False, **flat)
        comm.synchronize()

    def after_step(self) -> None:
        next_iter = self.trainer.iter + 1
        if self.period > 0 and next_iter % self.period == 0 and next_iter < self.max_iter:
            self._evaluate()

    def after_train(self) -> None:
        if _finished(self.trainer):
            self._evaluate()


class PeriodicWriter(HookBase):
    """Calls the writers every ``period`` iterations, after the last iteration and at the end of training
    (then closes them)."""

    def __init__(self, writers: List[EventWriter], period: int = 20):
        self.writers = list(writers)
        self.period = int(period)

    def after_step(self) -> None:
        next_iter = self.trainer.iter + 1
        if next_iter % self.period == 0 or next_iter == self.trainer.max_iter:
            for w in self.writers:
                w.write()

    def after_train(self) -> None:
        for w in self.writers:
            try:
                w.write()  # e.g. the final evaluation's scalars
            finally:
                w.close()


def default_writers(output_dir: str, max_iter: int) -> List[EventWriter]:
    """Console printer, ``output_dir/metrics.json`` and, when the ``tensorboard`` extra is installed, TensorBoard
    event files in ``output_dir`` (without it, a log line says how to get them)."""
    writers: List[EventWriter] = [CommonMetricPrinter(max_iter), JSONWriter(Path(output_dir) / "metrics.json")]
    if tensorboard_available():
        writers.append(TensorboardXWriter(output_dir))
    else:
        logger.info("TensorBoard event files are not written: `pip install tensorboard` (the package's "
                    "'tensorboard' extra) to get them; metrics.json has the same scalars.")
    return writers

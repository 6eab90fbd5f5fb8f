"""Training-loop hooks: timing, LR logging, periodic checkpoints, evaluation and metric writers."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

from ..utils import comm
from ..utils.events import EventWriter

logger = logging.getLogger(__name__)


class HookBase:
    """Called around training: ``before_train``, ``before_step``, ``after_step``, ``after_train``.

    ``self.trainer`` is set when the hook is registered.
    """

    trainer = None

    def before_train(self) -> None:
        pass

    def after_train(self) -> None:
        pass

    def before_step(self) -> None:
        pass

    def after_step(self) -> None:
        pass


class IterationTimer(HookBase):
    """Records the wall time of each iteration as ``time``."""

    def __init__(self):
        self._start = 0.0
        self._train_start = 0.0

    def before_train(self) -> None:
        self._train_start = time.perf_counter()

    def before_step(self) -> None:
        self._start = time.perf_counter()

    def after_step(self) -> None:
        self.trainer.storage.put_scalar("time", time.perf_counter() - self._start, smoothing_hint=False)

    def after_train(self) -> None:
        total = time.perf_counter() - self._train_start
        iters = self.trainer.iter + 1 - self.trainer.start_iter
        if iters > 0:
            logger.info("Total training time: %.1f s for %d iterations (%.4f s / it)", total, iters, total / iters)


class LRScheduler(HookBase):
    """Steps the LR scheduler after every iteration and records the first group's ``lr``."""

    def after_step(self) -> None:
        self.trainer.storage.put_scalar("lr", self.trainer.optimizer.param_groups[0]["lr"], smoothing_hint=False)
        self.trainer.scheduler.step()


class PeriodicCheckpointer(HookBase):
    """Saves ``model_{iter:07d}`` every ``period`` iterations and ``model_final`` at the end."""

    def __init__(self, checkpointer, period: int, max_iter: int):
        self.checkpointer = checkpointer
        self.period = period
        self.max_iter = max_iter

    def after_step(self) -> None:
        it = self.trainer.iter
        if self.period > 0 and (it + 1) % self.period == 0 and it + 1 < self.max_iter:
            self.trainer.save_checkpoint(f"model_{it:07d}")

    def after_train(self) -> None:
        if self.trainer.iter + 1 >= self.max_iter:
            self.trainer.save_checkpoint("model_final")


class EvalHook(HookBase):
    """Runs ``eval_function`` every ``period`` iterations (if > 0) and after the last one; records the
    numeric results as scalars ``task/metric``."""

    def __init__(self, period: int, eval_function: Callable[[], Dict], max_iter: int):
        self.period = period
        self.eval_function = eval_function
        self.max_iter = max_iter
        self.latest_results: Optional[Dict] = None

    def _evaluate(self) -> None:
        results = self.eval_function()
        self.latest_results = results
        if comm.is_main_process() and results:
            flat = {f"{task}/{k}": v for task, metrics in results.items() if isinstance(metrics, dict)
                    for k, v in metrics.items() if isinstance(v, (int, float)) and "-" not in k}
            self.trainer.storage.put_scalars(**flat, smoothing_hint=False)
        comm.synchronize()

    def after_step(self) -> None:
        next_iter = self.trainer.iter + 1
        if self.period > 0 and next_iter % self.period == 0 and next_iter != self.max_iter:
            self._evaluate()

    def after_train(self) -> None:
        if self.trainer.iter + 1 >= self.max_iter:
            self._evaluate()


class PeriodicWriter(HookBase):
    """Calls the writers every ``period`` iterations and at the end."""

    def __init__(self, writers: List[EventWriter], period: int = 20):
        self.writers = writers
        self.period = period

    def after_step(self) -> None:
        it = self.trainer.iter
        if (it + 1) % self.period == 0 or it == self.trainer.max_iter - 1:
            for w in self.writers:
                w.write()

    def after_train(self) -> None:
        for w in self.writers:
            w.write()
            w.close()


def default_writers(output_dir: str, max_iter: int) -> List[EventWriter]:
    """Console printer, ``metrics.json`` and TensorBoard events in ``output_dir``."""
    from ..utils.events import CommonMetricPrinter, JSONWriter, TensorboardXWriter

    return [CommonMetricPrinter(max_iter), JSONWriter(Path(output_dir) / "metrics.json"),
            TensorboardXWriter(output_dir)]

"""Training metrics: an event storage and its writers -- console line with ETA, ``metrics.json`` (one JSON
object per line, detectron2's format) and TensorBoard event files."""

from __future__ import annotations

import contextlib
import datetime
import importlib.util
import json
import logging
import math
import os
import statistics
import time
from collections import defaultdict, deque
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

__all__ = [
    "CommonMetricPrinter",
    "EventStorage",
    "EventWriter",
    "HistoryBuffer",
    "JSONWriter",
    "TensorboardXWriter",
    "tensorboard_available",
    "get_event_storage",
]

logger = logging.getLogger(__name__)

_CURRENT_STORAGE: List[EventStorage] = []


def get_event_storage() -> EventStorage:
    """The innermost active :class:`EventStorage` (inside ``with EventStorage(...)``)."""
    if not _CURRENT_STORAGE:
        raise RuntimeError("get_event_storage() must be called inside a 'with EventStorage(...)' block.")
    return _CURRENT_STORAGE[-1]


class HistoryBuffer:
    """The last ``max_length`` values of one scalar with their iterations, plus the global average."""

    def __init__(self, max_length: int = 10000):
        self._values: deque = deque(maxlen=max_length)
        self._total = 0.0
        self._count = 0

    def update(self, value: float, iteration: int) -> None:
        self._values.append((float(value), int(iteration)))
        self._total += value
        self._count += 1

    def latest(self) -> float:
        return self._values[-1][0]

    def median(self, window: int) -> float:
        """Median of the last ``window`` values (mean of the two middle ones for an even count)."""
        return float(statistics.median(v for v, _ in list(self._values)[-window:]))

    def avg(self, window: int) -> float:
        recent = [v for v, _ in list(self._values)[-window:]]
        return sum(recent) / len(recent)

    def global_avg(self) -> float:
        return self._total / max(self._count, 1)

    def values(self) -> List[Tuple[float, int]]:
        """All kept ``(value, iteration)`` pairs, oldest first."""
        return list(self._values)


class EventStorage:
    """Scalars recorded during training, keyed by name, each with the iteration it belongs to.

    Use as a context manager; :func:`get_event_storage` returns the active one. ``iter`` is the current
    iteration (the trainer sets it before each step).
    """

    def __init__(self, start_iter: int = 0):
        self.iter = int(start_iter)
        self._history: Dict[str, HistoryBuffer] = defaultdict(HistoryBuffer)
        self._latest: Dict[str, Tuple[float, int]] = {}
        self._smoothing_hints: Dict[str, bool] = {}

    def put_scalar(self, name: str, value: float, smoothing_hint: bool = True, cur_iter: Optional[int] = None
                   ) -> None:
        """Record ``value`` for ``name`` at ``cur_iter`` (default: the current iteration).

        ``smoothing_hint`` tells writers to report the median of the recent values (losses) instead of the
        latest one (learning rate, evaluation results). The first hint given for a name is kept.
        """
        value = float(value.detach().item() if isinstance(value, torch.Tensor) else value)
        it = self.iter if cur_iter is None else int(cur_iter)
        self._history[name].update(value, it)
        self._latest[name] = (value, it)
        previous = self._smoothing_hints.setdefault(name, smoothing_hint)
        if previous != smoothing_hint:
            logger.debug("Scalar %s was put with smoothing_hint=%s before; keeping it.", name, previous)

    def put_scalars(self, *, smoothing_hint: bool = True, cur_iter: Optional[int] = None, **values: float) -> None:
        for k, v in values.items():
            self.put_scalar(k, v, smoothing_hint=smoothing_hint, cur_iter=cur_iter)

    def history(self, name: str) -> HistoryBuffer:
        if name not in self._history:
            raise KeyError(f"No scalar named {name!r} was recorded; recorded: {sorted(self._history)}.")
        return self._history[name]

    def histories(self) -> Dict[str, HistoryBuffer]:
        return dict(self._history)

    def latest(self) -> Dict[str, Tuple[float, int]]:
        """``{name: (latest value, its iteration)}``."""
        return dict(self._latest)

    def latest_with_smoothing_hint(self, window_size: int = 20) -> Dict[str, Tuple[float, int]]:
        """Like :meth:`latest`, with the median of the last ``window_size`` values for smoothed scalars."""
        return {k: (self._history[k].median(window_size) if self._smoothing_hints[k] else v, it)
                for k, (v, it) in self._latest.items()}

    def smoothing_hints(self) -> Dict[str, bool]:
        return dict(self._smoothing_hints)

    def step(self) -> None:
        self.iter += 1

    def __enter__(self) -> EventStorage:
        _CURRENT_STORAGE.append(self)
        return self

    def __exit__(self, *exc) -> None:
        assert _CURRENT_STORAGE and _CURRENT_STORAGE[-1] is self, "EventStorage contexts must nest"
        _CURRENT_STORAGE.pop()


class EventWriter:
    """Writes the active storage's scalars somewhere; called periodically by the trainer."""

    def write(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


def _finite_or_none(value: float) -> Optional[float]:
    return value if math.isfinite(value) else None


class JSONWriter(EventWriter):
    """Appends, per write, one line ``{"iteration": it, name: value, ...}`` for each iteration with scalars
    not written yet (smoothed ones as the median of ``window_size``) to ``path``; non-finite values become
    null. A scalar put later for an earlier iteration (e.g. the final evaluation) is still written."""

    def __init__(self, path: str | Path, window_size: int = 20):
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self._path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the whole run
        self._window = window_size
        self._written: Dict[str, int] = {}

    def write(self) -> None:
        storage = get_event_storage()
        by_iter: Dict[int, Dict[str, Optional[float]]] = defaultdict(dict)
        for name, (value, it) in storage.latest_with_smoothing_hint(self._window).items():
            if it > self._written.get(name, -1):
                by_iter[it][name] = _finite_or_none(value)
                self._written[name] = it
        for it in sorted(by_iter):
            self._file.write(json.dumps({"iteration": it, **by_iter[it]}, sort_keys=True) + "\n")
        self._file.flush()
        with contextlib.suppress(OSError):
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


def tensorboard_available() -> bool:
    """Whether the ``tensorboard`` package (the ``tensorboard`` extra) is installed."""
    return importlib.util.find_spec("tensorboard") is not None


class TensorboardXWriter(EventWriter):
    """Scalars to TensorBoard event files (``events.out.tfevents.*``) in ``log_dir``; needs the ``tensorboard``
    package (``pip install "mask2former_rankseg[tensorboard]"``)."""

    def __init__(self, log_dir: str | Path, window_size: int = 20, **kwargs):
        from torch.utils.tensorboard import SummaryWriter  # heavy (about 1 s): imported only when events are written

        Path(log_dir).mkdir(parents=True, exist_ok=True)
        self._writer = SummaryWriter(str(log_dir), **kwargs)
        self._window = window_size
        self._written: Dict[str, int] = {}

    def write(self) -> None:
        storage = get_event_storage()
        for name, (value, it) in storage.latest_with_smoothing_hint(self._window).items():
            if it > self._written.get(name, -1):
                self._writer.add_scalar(name, value, it)
                self._written[name] = it
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class CommonMetricPrinter(EventWriter):
    """Logs ``eta, iter, losses (median of the last 20), time, data_time, lr, max_mem`` (CUDA only)."""

    def __init__(self, max_iter: int, window_size: int = 20):
        self._max_iter = max_iter
        self._window = window_size
        self._last: Optional[Tuple[int, float]] = None
        self._last_printed = -1

    def _eta(self, storage: EventStorage) -> Optional[str]:
        iteration = storage.iter
        remaining = self._max_iter - iteration - 1
        hist = storage.histories()
        if "time" in hist:
            seconds = hist["time"].median(1000) * remaining
            return str(datetime.timedelta(seconds=int(seconds)))
        now = time.perf_counter()  # no timer hook: estimate from the wall time between writes
        eta = None
        if self._last is not None and iteration > self._last[0]:
            per_iter = (now - self._last[1]) / (iteration - self._last[0])
            eta = str(datetime.timedelta(seconds=int(per_iter * remaining)))
        self._last = (iteration, now)
        return eta

    def write(self) -> None:
        storage = get_event_storage()
        if storage.iter == self._last_printed:
            return  # e.g. the end-of-training write right after the last iteration's
        self._last_printed = storage.iter
        hist = storage.histories()
        parts = []
        eta = self._eta(storage)
        if eta is not None:
            parts.append(f"eta: {eta}")
        parts.append(f"iter: {storage.iter}")
        losses = [f"{k}: {hist[k].median(self._window):.4g}" for k in sorted(hist) if "loss" in k]
        parts.append("  ".join(losses))
        if "time" in hist:
            parts.append(f"time: {hist['time'].avg(self._window):.4f}")
        if "data_time" in hist:
            parts.append(f"data_time: {hist['data_time'].avg(self._window):.4f}")
        if "lr" in hist:
            parts.append(f"lr: {hist['lr'].latest():.5g}")
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            parts.append(f"max_mem: {torch.cuda.max_memory_allocated() / 1024**2:.0f}M")
        logger.info("  ".join(p for p in parts if p))

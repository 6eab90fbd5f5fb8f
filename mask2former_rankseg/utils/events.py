"""Training metrics: an event storage and writers (console with ETA, ``metrics.json``, TensorBoard)."""

from __future__ import annotations

import datetime
import json
import logging
import time
from collections import defaultdict, deque
from pathlib import Path
from typing import Dict, List, Optional

import torch

logger = logging.getLogger(__name__)

_CURRENT_STORAGE: List[EventStorage] = []


def get_event_storage() -> EventStorage:
    """The innermost active :class:`EventStorage` (inside ``with EventStorage(...)``)."""
    if not _CURRENT_STORAGE:
        raise RuntimeError("get_event_storage() must be called inside a 'with EventStorage(...)' block.")
    return _CURRENT_STORAGE[-1]


class HistoryBuffer:
    """Recent values of one scalar (up to ``max_length``) plus a global average."""

    def __init__(self, max_length: int = 1000):
        self._values: deque = deque(maxlen=max_length)
        self._total = 0.0
        self._count = 0

    def update(self, value: float, iteration: int) -> None:
        self._values.append((value, iteration))
        self._total += value
        self._count += 1

    def latest(self) -> float:
        return self._values[-1][0]

    def median(self, window: int) -> float:
        recent = sorted(v for v, _ in list(self._values)[-window:])
        return recent[len(recent) // 2]

    def avg(self, window: int) -> float:
        recent = [v for v, _ in list(self._values)[-window:]]
        return sum(recent) / len(recent)

    def global_avg(self) -> float:
        return self._total / max(self._count, 1)


class EventStorage:
    """Scalars recorded during training, keyed by name, with the iteration they belong to."""

    def __init__(self, start_iter: int = 0):
        self.iter = start_iter
        self._history: Dict[str, HistoryBuffer] = defaultdict(HistoryBuffer)
        self._latest: Dict[str, tuple] = {}
        self._smoothing: Dict[str, bool] = {}

    def put_scalar(self, name: str, value: float, smoothing_hint: bool = True) -> None:
        value = float(value.item() if isinstance(value, torch.Tensor) else value)
        self._history[name].update(value, self.iter)
        self._latest[name] = (value, self.iter)
        self._smoothing.setdefault(name, smoothing_hint)

    def put_scalars(self, *, smoothing_hint: bool = True, **values: float) -> None:
        for k, v in values.items():
            self.put_scalar(k, v, smoothing_hint)

    def history(self, name: str) -> HistoryBuffer:
        if name not in self._history:
            raise KeyError(f"No scalar named {name!r} was recorded.")
        return self._history[name]

    def histories(self) -> Dict[str, HistoryBuffer]:
        return self._history

    def latest(self) -> Dict[str, tuple]:
        return dict(self._latest)

    def latest_with_smoothing_hint(self, window: int = 20) -> Dict[str, tuple]:
        return {k: (self._history[k].median(window) if self._smoothing[k] else v, it)
                for k, (v, it) in self._latest.items()}

    def step(self) -> None:
        self.iter += 1

    def __enter__(self) -> EventStorage:
        _CURRENT_STORAGE.append(self)
        return self

    def __exit__(self, *exc) -> None:
        _CURRENT_STORAGE.pop()


class EventWriter:
    def write(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class JSONWriter(EventWriter):
    """Appends one JSON object per write (the scalars of each new iteration) to ``path``."""

    def __init__(self, path: str | Path, window_size: int = 20):
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self._path, "a")  # noqa: SIM115 - kept open for the whole run
        self._window = window_size
        self._last_written = -1

    def write(self) -> None:
        storage = get_event_storage()
        by_iter: Dict[int, Dict[str, float]] = defaultdict(dict)
        for name, (value, it) in storage.latest_with_smoothing_hint(self._window).items():
            if it > self._last_written:
                by_iter[it][name] = value
        for it in sorted(by_iter):
            self._file.write(json.dumps({"iteration": it, **by_iter[it]}, sort_keys=True) + "\n")
        if by_iter:
            self._last_written = max(by_iter)
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class TensorboardXWriter(EventWriter):
    """Scalars to TensorBoard event files in ``log_dir``."""

    def __init__(self, log_dir: str | Path, window_size: int = 20):
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(str(log_dir))
        self._window = window_size
        self._last_written = -1

    def write(self) -> None:
        storage = get_event_storage()
        newest = self._last_written
        for name, (value, it) in storage.latest_with_smoothing_hint(self._window).items():
            if it > self._last_written:
                self._writer.add_scalar(name, value, it)
                newest = max(newest, it)
        self._last_written = newest
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class CommonMetricPrinter(EventWriter):
    """Logs ``iter, losses (median of 20), lr, time, data_time, ETA, max mem``."""

    def __init__(self, max_iter: int, window_size: int = 20):
        self._max_iter = max_iter
        self._window = window_size
        self._last: Optional[tuple] = None

    def _eta(self, storage: EventStorage) -> str:
        iteration = storage.iter
        try:
            seconds = storage.history("time").median(1000) * (self._max_iter - iteration - 1)
            return str(datetime.timedelta(seconds=int(seconds)))
        except KeyError:
            now = time.perf_counter()
            eta = "N/A"
            if self._last is not None and iteration > self._last[0]:
                per_iter = (now - self._last[1]) / (iteration - self._last[0])
                eta = str(datetime.timedelta(seconds=int(per_iter * (self._max_iter - iteration - 1))))
            self._last = (iteration, now)
            return eta

    def write(self) -> None:
        storage = get_event_storage()
        hist = storage.histories()
        losses = "  ".join(f"{k}: {hist[k].median(self._window):.4g}" for k in sorted(hist) if "loss" in k)
        parts = [f"eta: {self._eta(storage)}", f"iter: {storage.iter}", losses]
        if "time" in hist:
            parts.append(f"time: {hist['time'].avg(self._window):.4f}")
        if "data_time" in hist:
            parts.append(f"data_time: {hist['data_time'].avg(self._window):.4f}")
        if "lr" in hist:
            parts.append(f"lr: {hist['lr'].latest():.5g}")
        if torch.cuda.is_available():
            parts.append(f"max_mem: {torch.cuda.max_memory_allocated() / 1024 ** 2:.0f}M")
        logger.info("  ".join(p for p in parts if p))

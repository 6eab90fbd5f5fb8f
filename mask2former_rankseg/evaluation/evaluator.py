"""Evaluator protocol (reset / process / evaluate) and the inference loop over a dataset."""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import math
import os
import tempfile
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

import torch
from torch import nn

from ..utils import comm

logger = logging.getLogger(__name__)


class DatasetEvaluator:
    """Accumulates model outputs over a dataset and computes metrics at the end."""

    def reset(self) -> None:
        """Forget everything processed so far."""

    def process(self, inputs: List[Dict], outputs: List[Dict]) -> None:
        """Consume one batch: the inputs given to the model and its outputs."""

    def evaluate(self) -> Optional[Dict[str, Dict[str, float]]]:
        """Metrics as ``{task: {metric: value}}`` (``None`` on non-main processes)."""
        return None


class DatasetEvaluators(DatasetEvaluator):
    """Several evaluators run together; their result dicts are merged."""

    def __init__(self, evaluators: Sequence[DatasetEvaluator]):
        self._evaluators = list(evaluators)

    def reset(self) -> None:
        for e in self._evaluators:
            e.reset()

    def process(self, inputs, outputs) -> None:
        for e in self._evaluators:
            e.process(inputs, outputs)

    def evaluate(self):
        results: Dict[str, Any] = OrderedDict()
        for e in self._evaluators:
            result = e.evaluate()
            if comm.is_main_process() and result is not None:
                for k, v in result.items():
                    if k in results:
                        raise KeyError(f"Two evaluators produced results for the same task {k!r}.")
                    results[k] = v
        return results


@contextlib.contextmanager
def inference_context(model: nn.Module):
    """Put ``model`` in eval mode for the block and restore its previous mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def inference_on_dataset(model: nn.Module, data_loader: Iterable, evaluator: Optional[DatasetEvaluator],
                         log_period_s: float = 5.0) -> Dict:
    """Run ``model`` on every batch of ``data_loader`` and feed ``evaluator``; return its results."""
    num_images = len(data_loader) if hasattr(data_loader, "__len__") else None
    logger.info("Start inference on %s batches", num_images if num_images is not None else "?")
    if evaluator is None:
        evaluator = DatasetEvaluators([])
    evaluator.reset()
    start = time.perf_counter()
    last_log = start
    compute_time = 0.0
    count = 0
    with inference_context(model), torch.no_grad():
        for inputs in data_loader:
            t0 = time.perf_counter()
            outputs = model(inputs)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            compute_time += time.perf_counter() - t0
            evaluator.process(inputs, outputs)
            count += 1
            now = time.perf_counter()
            if now - last_log > log_period_s:
                per_batch = (now - start) / count
                eta = "?" if num_images is None else str(datetime.timedelta(seconds=int(per_batch * (num_images - count))))
                logger.info("Inference done %d/%s. %.4f s / batch. ETA=%s", count, num_images or "?", per_batch, eta)
                last_log = now
    total = time.perf_counter() - start
    logger.info("Total inference time: %s (%.4f s / batch, %.4f s / batch of model compute) on %d batches",
                datetime.timedelta(seconds=int(total)), total / max(count, 1), compute_time / max(count, 1), count)
    results = evaluator.evaluate()
    return results if results is not None else {}


def format_results_table(results: Dict[str, Dict[str, float]], per_class: bool = False) -> str:
    """Readable table ``task | metric | value``; per-class entries (``IoU-x``) are left out unless asked."""
    rows = []
    for task, metrics in results.items():
        if not isinstance(metrics, dict):
            continue
        for name, value in metrics.items():
            if not per_class and "-" in name:
                continue
            rows.append((task, name, value))
    if not rows:
        return "(no results)"
    w_task = max(len("task"), *(len(r[0]) for r in rows))
    w_name = max(len("metric"), *(len(r[1]) for r in rows))
    lines = [f"| {'task':<{w_task}} | {'metric':<{w_name}} | {'value':>9} |",
             f"|{'-' * (w_task + 2)}|{'-' * (w_name + 2)}|{'-' * 11}|"]
    for task, name, value in rows:
        text = f"{value:9.3f}" if isinstance(value, float) else f"{value!s:>9}"
        lines.append(f"| {task:<{w_task}} | {name:<{w_name}} | {text} |")
    return "\n".join(lines)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):
        return _json_safe(value.item())
    return value


def write_results_json(results: Dict, path: str | Path) -> None:
    """Write ``results`` as JSON atomically (temporary file + rename); NaN becomes null."""
    write_text_atomic(path, json.dumps(_json_safe(results), indent=2))


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise

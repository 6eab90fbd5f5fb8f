"""Evaluator protocol (reset / process / evaluate) and the inference loop over a dataset."""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import math
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence

import torch
from torch import nn

from ..data.catalog import MetadataCatalog
from ..utils import comm
from ..utils.file_io import atomic_write
from ..utils.precision import precision_context

logger = logging.getLogger(__name__)


class DatasetEvaluator:
    """Accumulates model outputs over a dataset and computes metrics at the end.

    ``needs_semantic_scores``: whether :meth:`process` reads ``sem_seg`` [K, H, W] scores. When no evaluator of a
    run does, :func:`inference_on_dataset` asks the model for ``sem_seg_labels`` [H, W] only (see
    :func:`semantic_output`). True by default (the detectron2 contract); evaluators that read only labels, or no
    semantic output at all, set it False.
    """

    needs_semantic_scores: bool = True

    def reset(self) -> None:
        """Forget everything processed so far."""

    def process(self, inputs: List[Dict], outputs: List[Dict]) -> None:
        """Consume one batch: the inputs given to the model and its outputs."""

    def evaluate(self) -> Optional[Dict[str, Dict[str, float]]]:
        """Metrics as ``{task: {metric: value}}`` (``None`` on non-main processes)."""
        return None


class DatasetEvaluators(DatasetEvaluator):
    """Several evaluators run together; their result dicts are merged (a task twice is an error)."""

    def __init__(self, evaluators: Sequence[DatasetEvaluator]):
        self._evaluators = list(evaluators)

    def __len__(self) -> int:
        return len(self._evaluators)

    @property
    def needs_semantic_scores(self) -> bool:  # type: ignore[override]
        return any(getattr(e, "needs_semantic_scores", True) for e in self._evaluators)

    def __iter__(self) -> Iterator[DatasetEvaluator]:
        return iter(self._evaluators)

    def reset(self) -> None:
        for e in self._evaluators:
            e.reset()

    def process(self, inputs: List[Dict], outputs: List[Dict]) -> None:
        for e in self._evaluators:
            e.process(inputs, outputs)

    def evaluate(self) -> Dict[str, Dict[str, float]]:
        results: Dict[str, Any] = OrderedDict()
        for e in self._evaluators:
            result = e.evaluate()  # every rank calls it: evaluators gather across processes inside
            if comm.is_main_process() and result is not None:
                for k, v in result.items():
                    if k in results:
                        raise KeyError(
                            f"Evaluators {[type(x).__name__ for x in self._evaluators]} produced results for "
                            f"the same task {k!r}; each task must come from one evaluator."
                        )
                    results[k] = v
        return results


@contextlib.contextmanager
def inference_context(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode for the block and restore its previous mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@contextlib.contextmanager
def semantic_output(model: nn.Module, mode: str) -> Iterator[None]:
    """Set ``model.semantic_output`` to ``mode`` ("scores" or "labels") for the block, then restore it.

    Models without that attribute (other meta-architectures, wrappers such as TTA) are left as they are; a
    ``DistributedDataParallel`` wrapper is looked through.
    """
    target = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    previous = getattr(target, "semantic_output", None)
    if previous is None:
        yield
        return
    target.semantic_output = mode
    try:
        yield
    finally:
        target.semantic_output = previous


def inference_on_dataset(model: nn.Module, data_loader: Iterable[List[Dict]],
                         evaluator: Optional[DatasetEvaluator], log_period_s: float = 5.0,
                         precision: str = "fp32") -> Dict:
    """Run ``model`` on every batch of ``data_loader`` and feed ``evaluator``; return its results.

    The model runs in eval mode under ``torch.no_grad`` and its previous mode is restored. Progress
    (with ETA) is logged every ``log_period_s`` seconds; the first few batches are warm-up and are left
    out of the timings. ``evaluator=None`` only runs the model. On non-main processes of a distributed
    run the result is ``{}``. When the evaluator needs no ``sem_seg`` scores
    (``evaluator.needs_semantic_scores`` False) the model is run with ``semantic_output="labels"``, so no
    [K, H, W] score tensor is made per image. ``precision`` (``MODEL.PRECISION``): "bf16" runs the model under
    bfloat16 autocast (:func:`~mask2former_rankseg.utils.precision.precision_context`; float32 where it would not
    pay).
    """
    total_batches = len(data_loader) if hasattr(data_loader, "__len__") else None
    logger.info("Start inference on %s batches", total_batches if total_batches is not None else "?")
    if evaluator is None:
        evaluator = DatasetEvaluators([])
    evaluator.reset()
    num_warmup = min(5, total_batches - 1) if total_batches else 0
    start = time.perf_counter()
    last_log = start
    timed_start, compute_time, timed_batches, timed_images = start, 0.0, 0, 0
    idx = -1
    mode = "scores" if getattr(evaluator, "needs_semantic_scores", True) else "labels"
    device = next(iter(model.parameters()), torch.empty(0)).device
    with inference_context(model), torch.no_grad(), semantic_output(model, mode), \
            precision_context(precision, device):
        for idx, inputs in enumerate(data_loader):
            if idx == num_warmup:
                timed_start, compute_time, timed_batches, timed_images = time.perf_counter(), 0.0, 0, 0
            t0 = time.perf_counter()
            outputs = model(inputs)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            compute_time += time.perf_counter() - t0
            evaluator.process(inputs, outputs)
            timed_batches += 1
            timed_images += len(inputs)
            now = time.perf_counter()
            if now - last_log >= log_period_s:
                per_batch = (now - timed_start) / timed_batches
                eta = "?"
                if total_batches is not None:
                    eta = str(datetime.timedelta(seconds=int(per_batch * (total_batches - idx - 1))))
                logger.info("Inference done %d/%s. %.4f s/batch (model %.4f s/batch). ETA=%s", idx + 1,
                            total_batches if total_batches is not None else "?", per_batch,
                            compute_time / timed_batches, eta)
                last_log = now
    num_batches = idx + 1
    total = time.perf_counter() - start
    timed = time.perf_counter() - timed_start
    logger.info("Total inference time: %s for %d batches (%.4f s/image, of which model %.4f s/image, "
                "over %d images after %d warm-up batches)", datetime.timedelta(seconds=round(total)),
                num_batches, timed / max(timed_images, 1), compute_time / max(timed_images, 1), timed_images,
                min(num_warmup, num_batches))
    results = evaluator.evaluate()
    return results if results is not None else OrderedDict()


def metadata_or_given(evaluator: str, dataset_name: Optional[str], **given: Any) -> Dict[str, Any]:
    """``given`` values, each None replaced by the same-named field of ``dataset_name``'s metadata.

    Raises:
        ValueError: a value is neither given nor in the metadata (naming the evaluator, the keys and the dataset).
    """
    meta = None
    if dataset_name is not None:
        meta = MetadataCatalog.get(dataset_name)
    values = {k: v if v is not None or meta is None else meta.get(k) for k, v in given.items()}
    missing = [k for k, v in values.items() if v is None]
    if missing:
        raise ValueError(f"{evaluator} needs {' and '.join(given)} (arguments, or metadata of {dataset_name!r}); "
                         f"missing: {', '.join(missing)}.")
    return values


def format_results_table(results: Dict[str, Any], per_class: bool = False) -> str:
    """Readable table ``task | metric | value`` of ``{task: {metric: value}}``.

    Nested results (``{dataset: {task: {metric: value}}}``) get ``dataset/task`` rows. Per-class
    entries (names with a ``-``, e.g. ``IoU-wall``) are left out unless ``per_class``.
    """
    rows = []

    def collect(prefix: str, metrics: Dict[str, Any]) -> None:
        for name, value in metrics.items():
            if isinstance(value, dict):
                collect(f"{prefix}/{name}" if prefix else str(name), value)
            elif per_class or "-" not in str(name):
                rows.append((prefix, str(name), value))

    collect("", results)
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
    write_text_atomic(path, json.dumps(_json_safe(results), indent=2, allow_nan=False))


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`~mask2former_rankseg.utils.file_io.atomic_write`)."""
    atomic_write(path, lambda f: f.write(text), mode="w")

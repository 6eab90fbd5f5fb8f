"""Command line, run set-up, seeding and RNG state helpers shared by ``train_net.py`` and tools."""

from __future__ import annotations

import logging
import math
import os
import platform
import random
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import numpy as np
import torch
import torch.distributed as dist

from ..config import dump_config
from ..config.arguments import default_argument_parser
from ..utils import comm
from ..utils.file_io import atomic_write
from ..utils.logger import setup_logger

__all__ = [
    "OutputDirError",
    "capture_rng_state",
    "check_output_dir",
    "default_argument_parser",
    "default_setup",
    "resolve_device",
    "restore_rng_state",
    "seed_all_rng",
    "verify_results",
]

logger = logging.getLogger(__name__)

RANDOM_WEIGHTS_WARNING = (
    "MODEL.WEIGHTS is empty: the model is RANDOMLY INITIALISED and its predictions and scores are MEANINGLESS. Give "
    "a checkpoint (MODEL.WEIGHTS path/to/model_final.pth), or pass {flag} if random weights are what you want."
)


def warn_if_random_weights(cfg, allowed: bool, flag: str) -> bool:
    """Log :data:`RANDOM_WEIGHTS_WARNING` (naming ``flag``, the option that silences it) when ``cfg.MODEL.WEIGHTS``
    is empty and random weights were not ``allowed``; returns whether it warned."""
    if cfg.MODEL.WEIGHTS or allowed:
        return False
    logger.warning("%s", RANDOM_WEIGHTS_WARNING.format(flag=flag))
    return True




class OutputDirError(RuntimeError):
    """``OUTPUT_DIR`` cannot be created or written to, or its file system lacks the space a checkpoint needs."""


def check_output_dir(output_dir: str | Path, required_bytes: int = 0) -> None:
    """Make sure ``output_dir`` exists and takes a file (created, written, fsynced, deleted), and that its
    file system has at least ``required_bytes`` free.

    Raises:
        OutputDirError: naming the directory, the system's reason (or the space free and needed) and the fix.
    """
    path = Path(output_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(prefix=".write_test.", dir=path) as probe:
            probe.write(b"mask2former_rankseg write test\n")
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as e:
        raise OutputDirError(
            f"OUTPUT_DIR {str(path)!r} is not writable: {e.strerror or e}"
            f"{f' ({e.filename})' if e.filename and str(e.filename) != str(path) else ''}. "
            "Set OUTPUT_DIR to a folder this user can write to (or fix its permissions / free its disk)."
        ) from e
    if required_bytes > 0:
        free = shutil.disk_usage(path).free
        if free < required_bytes:
            raise OutputDirError(
                f"OUTPUT_DIR {str(path)!r} has {format_bytes(free)} free on its file system, but one checkpoint of "
                f"this model and its optimizer state takes about {format_bytes(required_bytes)}. Free some space or "
                "set OUTPUT_DIR to another disk."
            )


def format_bytes(num_bytes: int) -> str:
    """``1536`` -> ``"1.5 KiB"`` (B, KiB, MiB, GiB, TiB)."""
    value = float(num_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def default_setup(cfg, args: Any) -> None:
    """Run set-up: check that ``OUTPUT_DIR`` can be written (:func:`check_output_dir`), set up logging
    (console on rank 0, ``OUTPUT_DIR/log.txt``), log the environment, arguments and config, save the merged
    config to ``OUTPUT_DIR/config.yaml`` (atomically), seed the RNGs (``SEED + rank``, or a random seed
    when ``SEED < 0``) and set ``torch.backends.cudnn.benchmark`` from ``CUDNN_BENCHMARK`` (not in
    eval-only runs)."""
    output_dir = cfg.OUTPUT_DIR
    rank = comm.get_rank()
    if output_dir:
        check_output_dir(output_dir)  # every process writes its log there
    setup_logger(output_dir or None, distributed_rank=rank)
    logger.info("Rank %d of %d. Python %s, torch %s, numpy %s, CUDA available: %s%s, platform %s", rank,
                comm.get_world_size(), sys.version.split()[0], torch.__version__, np.__version__,
                torch.cuda.is_available(),
                f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "", platform.platform())
    if comm.get_world_size() > 1:
        backend = dist.get_backend()
        logger.info("torch.distributed backend %s: %d processes%s", backend, comm.get_world_size(),
                    "" if backend == "nccl" else " (CPU workers; --num-gpus counts worker processes)")
    logger.info("Command line arguments: %s", args)
    config_file = getattr(args, "config_file", "")
    if config_file:
        logger.info("Config file %s", config_file)

    text = dump_config(cfg)
    logger.info("Running with full config:\n%s", text)
    if comm.is_main_process() and output_dir:
        path = Path(output_dir) / "config.yaml"
        atomic_write(path, lambda f: f.write(text.encode("utf-8")))
        logger.info("Full config saved to %s", path)
    seed = cfg.SEED if cfg.SEED >= 0 else None
    seed_all_rng(None if seed is None else seed + rank)
    if not getattr(args, "eval_only", False):
        torch.backends.cudnn.benchmark = bool(cfg.CUDNN_BENCHMARK)


def resolve_device(device: str) -> str:
    """``MODEL.DEVICE``, or ``"cpu"`` (with a warning) when it names CUDA and no GPU is available."""
    device = str(device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        logger.warning("MODEL.DEVICE=%s but CUDA is not available: using the CPU.", device)
        return "cpu"
    return device


def seed_all_rng(seed: Optional[int] = None) -> int:
    """Seed Python's ``random``, numpy's global RNG and torch (a fresh random seed when None); returns it."""
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "little") % 2**31
        logger.info("Using a random seed: %d", seed)
    else:
        logger.info("Using seed %d", seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return seed


def capture_rng_state() -> Dict[str, Any]:
    """The global RNG states (Python, numpy, torch CPU and every CUDA device) as tensors, ints and tuples,
    so that a checkpoint holding them still loads with ``torch.load(weights_only=True)``."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: Dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state` (CUDA states only when the device count matches)."""
    random.setstate(_as_tuple(state["python"]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:
            logger.warning("The checkpoint has CUDA RNG states for %d devices, this machine has %d; CUDA RNG "
                           "states are not restored.", len(cuda), torch.cuda.device_count())


def _as_tuple(value: Any) -> Any:
    """Lists back to tuples (``random.setstate`` needs tuples)."""
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def verify_results(cfg, results: Mapping[str, Any]) -> bool:
    """Check ``results`` against ``TEST.EXPECTED_RESULTS`` (``[[task, metric, expected, tolerance], ...]``).

    Returns True when every entry is present, finite and within tolerance (or there are none); logs the
    failures and returns False otherwise.
    """
    expected = cfg.TEST.EXPECTED_RESULTS
    if not expected:
        return True
    failures = []
    for entry in expected:
        task, metric, value, tolerance = entry
        actual = results.get(task, {}).get(metric) if isinstance(results.get(task), Mapping) else None
        if actual is None or not math.isfinite(float(actual)):
            failures.append(f"{task}/{metric}: missing or not finite ({actual})")
        elif abs(float(actual) - float(value)) > float(tolerance):
            failures.append(f"{task}/{metric}: {float(actual):.4f}, expected {value} +- {tolerance}")
    if failures:
        logger.error("Result verification (TEST.EXPECTED_RESULTS) failed:\n  %s", "\n  ".join(failures))
        return False
    logger.info("Results verification passed.")
    return True

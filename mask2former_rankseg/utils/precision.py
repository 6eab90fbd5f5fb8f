"""``MODEL.PRECISION``: float32, or bfloat16 autocast around the model's forward with the numerically sensitive
parts kept in float32.

``"bf16"`` runs the model under ``torch.autocast(device_type, dtype=torch.bfloat16)`` (convolutions, linear
layers and attention products in bfloat16) with the backbone in ``channels_last`` memory format. What stays in
float32, whatever the autocast state: the losses and the Hungarian matcher's costs (:func:`float32_region` on
``SetCriterion.forward``, ``HungarianMatcher.forward``, RankSeg's ``multilabel_loss`` and the per-pixel models'
pixel loss), RankSeg's ``LayerNorm`` over ranks (:class:`Float32LayerNorm`: ``ml_norm``, ``mask_norm``, ``norm``),
the post-processing after the decoder (softmax / sigmoid / class x mask product) and the deformable attention's
sampling locations and weights (the MSDA op computes in float32 when autocast is on).

Fallback: on the CPU, bfloat16 only pays with native bfloat16 matrix instructions (``amx_bf16`` or
``avx512_bf16`` in /proc/cpuinfo); without them (or on a GPU without bfloat16) the model runs in float32 and
the reason is logged once (:func:`resolve_precision`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Set, Tuple, Union

import torch
from torch import nn

from ..config.validate import PRECISIONS, check_precision

__all__ = [
    "BF16_CPU_FLAGS",
    "PRECISIONS",
    "Float32LayerNorm",
    "autocast_dtype",
    "check_precision",
    "compile_model",
    "cpu_bf16_flags",
    "float32_region",
    "precision_context",
    "prepare_model_for_precision",
    "resolve_precision",
]

logger = logging.getLogger(__name__)

BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
"""/proc/cpuinfo flags of native bfloat16 matrix arithmetic (AMX tiles; AVX-512 BF16 dot products)."""

_LOGGED: Set[Tuple[str, str]] = set()


@functools.cache
def cpu_bf16_flags(cpuinfo: str = "/proc/cpuinfo") -> Tuple[str, ...]:
    """The :data:`BF16_CPU_FLAGS` this CPU has (empty when none or when /proc/cpuinfo cannot be read)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return ()
    flags: Set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    return tuple(f for f in BF16_CPU_FLAGS if f in flags)


def _bf16_unavailable_reason(device_type: str) -> Optional[str]:
    """Why bfloat16 would not pay on ``device_type`` (None: it does)."""
    if device_type == "cpu":
        if not cpu_bf16_flags():
            return (f"this CPU has none of {list(BF16_CPU_FLAGS)} (no native bfloat16 matrix instructions; "
                    "bfloat16 would be emulated and slower than float32)")
        if not torch.backends.mkldnn.is_available():
            return "PyTorch was built without oneDNN (mkldnn), which runs the CPU's bfloat16 convolutions and matmuls"
        return None
    if device_type == "cuda":
        if not torch.cuda.is_available() or not torch.cuda.is_bf16_supported():
            return "this GPU does not support bfloat16"
        return None
    return f"bfloat16 autocast is not set up for device type {device_type!r}"


def resolve_precision(precision: str, device: Union[str, torch.device]) -> str:
    """The precision the model runs in on ``device``: ``precision``, or ``"fp32"`` when ``"bf16"`` would not
    pay there (logged once per device type and reason)."""
    check_precision(precision)
    if precision == "fp32":
        return "fp32"
    device_type = torch.device(device).type
    reason = _bf16_unavailable_reason(device_type)
    if reason is None:
        return "bf16"
    if (device_type, reason) not in _LOGGED:
        _LOGGED.add((device_type, reason))
        logger.warning("MODEL.PRECISION='bf16' on %s: running in float32 because %s.", device_type, reason)
    return "fp32"


def precision_context(precision: str, device: Union[str, torch.device]) -> contextlib.AbstractContextManager:
    """``torch.autocast(device_type, dtype=torch.bfloat16)`` when ``precision`` resolves to bf16 on ``device``,
    else a no-op context."""
    device_type = torch.device(device).type
    if resolve_precision(precision, device_type) == "bf16":
        return torch.autocast(device_type=device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepare_model_for_precision(model: nn.Module, precision: str, device: Union[str, torch.device]) -> nn.Module:
    """With bf16 in effect: the backbone's (or, without one, the model's) 4-D weights in ``channels_last``
    (oneDNN / cuDNN bfloat16 convolutions run fastest in NHWC; later activations follow the weights' layout).
    Parameters are converted in place, so optimizers keep their references. Returns ``model``."""
    if resolve_precision(precision, device) == "bf16":
        target = getattr(model, "module", model)  # DistributedDataParallel
        target = getattr(target, "backbone", target)
        target.to(memory_format=torch.channels_last)
    return model


def compile_model(model: nn.Module, enabled: bool) -> nn.Module:
    """``MODEL.COMPILE``: with ``enabled``, ``model.compile()`` -- ``torch.compile`` (inductor, mode default) of the
    forward in place, so parameter and buffer names (checkpoints) stay as they are. The first forward in each mode
    (training, evaluation) compiles. Returns ``model``."""
    if enabled:
        logger.info("MODEL.COMPILE: compiling %s's forward with torch.compile (inductor); the first call in each "
                    "mode compiles (minutes on a small CPU).", type(model).__name__)
        model.compile()
    return model


def _to_float32(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.float() if value.dtype in (torch.bfloat16, torch.float16) else value
    if isinstance(value, dict):
        return {k: _to_float32(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_float32(v) for v in value]
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(_to_float32(v) for v in value)
    return value


@contextlib.contextmanager
def _autocast_off() -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for device_type in ("cpu", "cuda"):
            if torch.is_autocast_enabled(device_type):
                stack.enter_context(torch.autocast(device_type=device_type, enabled=False))
        yield


def autocast_dtype(device_type: str) -> Optional[torch.dtype]:
    """The dtype autocast computes in on ``device_type`` ("cpu", "cuda"), or None when autocast is off there."""
    return torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None


def _autocast_on() -> bool:
    return torch.is_autocast_enabled("cpu") or torch.is_autocast_enabled("cuda")


def float32_region(fn: Callable) -> Callable:
    """Decorator: when autocast is on, run ``fn`` with autocast off and its half/bfloat16 tensor arguments
    (also inside dicts, lists and tuples) cast to float32; otherwise call it as is (no cost)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if not _autocast_on():
            return fn(*args, **kwargs)
        with _autocast_off():
            return fn(*_to_float32(list(args)), **_to_float32(dict(kwargs)))

    return wrapper


class Float32LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` computed in float32 under autocast (RankSeg's LayerNorm over ranks: the statistics of a
    few sorted logits, where bfloat16's 8-bit mantissa would change the order). Same parameters and state dict."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32 and not _autocast_on():
            return super().forward(x)
        with _autocast_off():
            return super().forward(x.float())

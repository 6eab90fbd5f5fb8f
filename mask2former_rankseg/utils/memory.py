"""Surviving CUDA out-of-memory errors in inference post-processing (as detectron2's ``retry_if_cuda_oom``)."""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable, TypeVar

import torch

__all__ = ["retry_if_cuda_oom", "to_cpu"]

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


def retry_if_cuda_oom(func: F) -> F:
    """Wrap ``func`` so that a CUDA out-of-memory error does not end the run:

    1. call ``func``;
    2. on ``torch.cuda.OutOfMemoryError``, release PyTorch's cached GPU memory and call it again;
    3. if that fails the same way, call it once more with every CUDA tensor among the arguments (also
       inside lists, tuples and dicts) moved to the CPU, and return what it returns then (CPU results).

    ``func`` must accept CPU tensors for step 3 (plain tensor code does). Other errors pass through.
    """

    @functools.wraps(func)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
        try:
            return func(*args, **kwargs)
        except torch.cuda.OutOfMemoryError:
            logger.info("CUDA ran out of memory in %s twice; running it on the CPU (slower).",
                        getattr(func, "__qualname__", repr(func)))
        return func(*to_cpu(args), **to_cpu(kwargs))

    return wrapped  # type: ignore[return-value]


def to_cpu(obj: Any) -> Any:
    """``obj`` with every CUDA tensor (also in lists, tuples and dicts) replaced by a CPU copy."""
    if isinstance(obj, torch.Tensor):
        return obj.cpu() if obj.device.type == "cuda" else obj
    if isinstance(obj, dict):
        return type(obj)((k, to_cpu(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        converted = [to_cpu(v) for v in obj]
        return type(obj)(*converted) if hasattr(obj, "_fields") else type(obj)(converted)
    return obj

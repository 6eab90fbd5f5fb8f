"""Helpers for multi-process (torch.distributed) runs; every one of them also works in a single process.

Object collectives (:func:`all_gather`, :func:`gather`) go through a Gloo group when the default
backend is NCCL, so gathering Python objects never needs GPU memory or a current CUDA device.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable, Dict, List, Tuple, Type, Union

import numpy as np
import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_local_rank() -> int:
    """Rank within this machine (``LOCAL_RANK`` as set by the launcher or torchrun); 0 when not distributed."""
    return int(os.environ.get("LOCAL_RANK", 0)) if is_distributed() else 0


def is_main_process() -> bool:
    return get_rank() == 0


def synchronize() -> None:
    """Barrier across all processes (no-op in a single process)."""
    if get_world_size() > 1:
        dist.barrier()


@functools.cache
def _object_group():
    """A Gloo group over all ranks when the default backend is NCCL; else the default group (None)."""
    if dist.get_backend() == "nccl":
        return dist.new_group(backend="gloo")
    return None


def all_gather(data: Any) -> List[Any]:
    """Gather a picklable object from every process; returns the list ordered by rank."""
    if get_world_size() == 1:
        return [data]
    out: List[Any] = [None] * get_world_size()
    dist.all_gather_object(out, data, group=_object_group())
    return out


def gather(data: Any, dst: int = 0) -> List[Any]:
    """Gather a picklable object to rank ``dst`` (list ordered by rank); other ranks receive ``[]``."""
    if get_world_size() == 1:
        return [data]
    is_dst = get_rank() == dst
    out = [None] * get_world_size() if is_dst else None
    dist.gather_object(data, out, dst=dst, group=_object_group())
    return out if is_dst else []


def call_on_main_process(fn: Callable[[], Any],
                         errors: Union[Type[BaseException], Tuple[Type[BaseException], ...]]) -> None:
    """Call ``fn()`` on the main process only; when it raises one of ``errors``, raise that error on every
    process (all must call this), so that all of them stop together with the same message instead of
    the others waiting in their next collective."""
    error = None
    if is_main_process():
        try:
            fn()
        except errors as e:
            error = e
    if get_world_size() > 1:
        error = all_gather(error)[0]
    if error is not None:
        raise error


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Copy process ``src``'s buffers (e.g. BatchNorm running statistics, which DistributedDataParallel with
    ``broadcast_buffers=False`` lets drift apart) into ``module`` on every process; all must call it."""
    if get_world_size() == 1:
        return
    with torch.no_grad():
        for buffer in module.buffers():
            dist.broadcast(buffer, src=src)


def shared_random_seed() -> int:
    """A random seed drawn on rank 0 and shared with every process (all ranks must call it)."""
    seed = int(np.random.randint(2**31))
    return all_gather(seed)[0]


def reduce_dict(values: Dict[str, torch.Tensor], average: bool = True) -> Dict[str, torch.Tensor]:
    """Sum (or average) scalar tensors over processes; the result is only meaningful on rank 0.

    All ranks must pass the same keys. In a single process ``values`` is returned unchanged.
    """
    if get_world_size() == 1:
        return values
    with torch.no_grad():
        names = sorted(values)
        stacked = torch.stack([values[k] for k in names])
        dist.reduce(stacked, dst=0)
        if get_rank() == 0 and average:
            stacked /= get_world_size()
        return dict(zip(names, stacked))

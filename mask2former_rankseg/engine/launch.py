"""Start one process per GPU (or per CPU worker) and initialise ``torch.distributed`` for them."""

from __future__ import annotations

import datetime
import logging
import os
import socket
from typing import Any, Callable, Optional, Sequence

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

__all__ = ["DEFAULT_TIMEOUT", "launch"]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = datetime.timedelta(minutes=30)


def _find_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def launch(main_func: Callable[..., Any], num_gpus_per_machine: int, num_machines: int = 1, machine_rank: int = 0,
           dist_url: Optional[str] = None, args: Sequence[Any] = (),
           timeout: datetime.timedelta = DEFAULT_TIMEOUT) -> Any:
    """Run ``main_func(*args)`` in ``num_gpus_per_machine x num_machines`` processes.

    * One process in total: a plain call (its return value is returned).
    * Started by ``torchrun`` (``WORLD_SIZE`` and ``RANK`` set): this process joins the group from the
      environment and calls ``main_func``; the other arguments are ignored.
    * Otherwise ``num_gpus_per_machine`` processes are spawned on this machine, process ``i`` with rank
      ``machine_rank * num_gpus_per_machine + i``, on GPU ``i`` with NCCL -- or, without CUDA, as CPU
      worker processes with Gloo. ``dist_url`` "auto" (or None) picks a free port on 127.0.0.1 (one
      machine only); several machines need ``tcp://<machine 0>:<port>``.
    """
    if "WORLD_SIZE" in os.environ and "RANK" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        return _run_under_torchrun(main_func, args, timeout)
    if num_gpus_per_machine < 1 or num_machines < 1:
        raise ValueError(f"--num-gpus ({num_gpus_per_machine}) and --num-machines ({num_machines}) must be >= 1.")
    world_size = num_machines * num_gpus_per_machine
    if world_size == 1:
        return main_func(*args)
    if torch.cuda.is_available() and num_gpus_per_machine > torch.cuda.device_count():
        raise ValueError(f"--num-gpus {num_gpus_per_machine} exceeds the {torch.cuda.device_count()} visible GPUs.")
    if dist_url in (None, "", "auto"):
        if num_machines != 1:
            raise ValueError("--dist-url auto only works on one machine; give tcp://<IP of machine 0>:<port>.")
        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    if num_machines > 1 and dist_url.startswith("file://"):
        logger.warning("file:// init URLs may be unreliable across machines; prefer tcp://.")
    if not torch.cuda.is_available():
        logger.info("CUDA is not available: starting %d CPU worker processes (Gloo backend).", num_gpus_per_machine)
    mp.start_processes(
        _distributed_worker, nprocs=num_gpus_per_machine,
        args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, tuple(args), timeout),
        daemon=False, start_method="spawn",
    )
    return None


def _run_under_torchrun(main_func: Callable[..., Any], args: Sequence[Any], timeout: datetime.timedelta) -> Any:
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=_backend(), init_method="env://", timeout=timeout)
    try:
        result = main_func(*args)
        dist.barrier()
        return result
    finally:
        dist.destroy_process_group()


def _distributed_worker(local_rank: int, main_func: Callable[..., Any], world_size: int, num_per_machine: int,
                        machine_rank: int, dist_url: str, args: Sequence[Any], timeout: datetime.timedelta) -> None:
    rank = machine_rank * num_per_machine + local_rank
    os.environ["LOCAL_RANK"] = str(local_rank)
    os.environ["LOCAL_WORLD_SIZE"] = str(num_per_machine)
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    try:
        dist.init_process_group(backend=_backend(), init_method=dist_url, world_size=world_size, rank=rank,
                                timeout=timeout)
    except Exception as e:
        raise RuntimeError(f"Process {rank} could not join the process group at {dist_url}: {e}") from e
    try:
        main_func(*args)
        dist.barrier()  # only after success: a failed rank must not wait for the others here
    finally:
        dist.destroy_process_group()

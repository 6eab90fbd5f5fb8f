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

__all__ = ["DEFAULT_TIMEOUT", "backend_for_device", "launch"]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = datetime.timedelta(minutes=30)
BACKENDS = ("nccl", "gloo")


def _find_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def backend_for_device(device: Optional[str] = None) -> str:
    """The process-group backend for models on ``device`` (``MODEL.DEVICE``): NCCL for CUDA devices when
    CUDA is available, else Gloo (CPU workers). ``None``: NCCL whenever CUDA is available."""
    if device is not None and not str(device).startswith("cuda"):
        return "gloo"
    return "nccl" if torch.cuda.is_available() else "gloo"


def launch(main_func: Callable[..., Any], num_gpus_per_machine: int, num_machines: int = 1, machine_rank: int = 0,
           dist_url: Optional[str] = None, args: Sequence[Any] = (),
           timeout: datetime.timedelta = DEFAULT_TIMEOUT, backend: Optional[str] = None) -> Any:
    """Run ``main_func(*args)`` in ``num_gpus_per_machine x num_machines`` processes.

    * One process in total: a plain call (its return value is returned).
    * Started by ``torchrun`` (``WORLD_SIZE`` > 1 and ``RANK`` set): this process joins the group from the
      environment (``env://``) and calls ``main_func``; the process counts and ``dist_url`` are ignored.
    * Otherwise ``num_gpus_per_machine`` processes are spawned on this machine, process ``i`` with rank
      ``machine_rank * num_gpus_per_machine + i``. ``dist_url`` "auto" (or None) picks a free port on
      127.0.0.1 (one machine only); several machines need ``tcp://<machine 0>:<port>``.

    Args:
        backend: "nccl" (process ``i`` on GPU ``i``), "gloo" (CPU worker processes; no GPU is assigned),
            or None for :func:`backend_for_device` (NCCL when CUDA is available).
    Raises:
        ValueError: bad process counts, machine rank, backend, or more GPUs asked for than visible.
    """
    backend = backend or backend_for_device()
    if backend not in BACKENDS:
        raise ValueError(f"Unknown torch.distributed backend {backend!r}; use one of {BACKENDS}.")
    if backend == "nccl" and not torch.cuda.is_available():
        raise ValueError("The NCCL backend needs CUDA, which is not available; use MODEL.DEVICE cpu (Gloo).")
    if "WORLD_SIZE" in os.environ and "RANK" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        if num_gpus_per_machine * num_machines not in (1, int(os.environ["WORLD_SIZE"])):
            logger.warning("Started by torchrun with WORLD_SIZE=%s: --num-gpus %d / --num-machines %d are ignored.",
                           os.environ["WORLD_SIZE"], num_gpus_per_machine, num_machines)
        return _run_under_torchrun(main_func, args, timeout, backend)
    if num_gpus_per_machine < 1 or num_machines < 1:
        raise ValueError(f"--num-gpus ({num_gpus_per_machine}) and --num-machines ({num_machines}) must be >= 1.")
    if not 0 <= machine_rank < num_machines:
        raise ValueError(f"--machine-rank {machine_rank} must lie in [0, --num-machines {num_machines}).")
    world_size = num_machines * num_gpus_per_machine
    if world_size == 1:
        return main_func(*args)
    if backend == "nccl" and num_gpus_per_machine > torch.cuda.device_count():
        raise ValueError(f"--num-gpus {num_gpus_per_machine} exceeds the {torch.cuda.device_count()} visible GPUs.")
    if dist_url in (None, "", "auto"):
        if num_machines != 1:
            raise ValueError("--dist-url auto only works on one machine; give tcp://<IP of machine 0>:<port>.")
        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    if num_machines > 1 and dist_url.startswith("file://"):
        logger.warning("file:// init URLs may be unreliable across machines; prefer tcp://.")
    if backend == "gloo":
        logger.info("Starting %d CPU worker processes (Gloo backend).", num_gpus_per_machine)
    mp.start_processes(
        _distributed_worker, nprocs=num_gpus_per_machine,
        args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, tuple(args), timeout, backend),
        daemon=False, start_method="spawn",
    )
    return None


def _run_under_torchrun(main_func: Callable[..., Any], args: Sequence[Any], timeout: datetime.timedelta,
                        backend: str) -> Any:
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, init_method="env://", timeout=timeout)
    try:
        result = main_func(*args)
        dist.barrier()
        return result
    finally:
        dist.destroy_process_group()


def _distributed_worker(local_rank: int, main_func: Callable[..., Any], world_size: int, num_per_machine: int,
                        machine_rank: int, dist_url: str, args: Sequence[Any], timeout: datetime.timedelta,
                        backend: str) -> None:
    rank = machine_rank * num_per_machine + local_rank
    os.environ["LOCAL_RANK"] = str(local_rank)
    os.environ["LOCAL_WORLD_SIZE"] = str(num_per_machine)
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    elif "OMP_NUM_THREADS" not in os.environ:  # CPU workers share the cores (as torchrun's default does)
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // num_per_machine))
    try:
        dist.init_process_group(backend=backend, init_method=dist_url, world_size=world_size, rank=rank,
                                timeout=timeout)
    except Exception as e:
        raise RuntimeError(f"Process {rank} could not join the process group at {dist_url}: {e}") from e
    try:
        main_func(*args)
        dist.barrier()  # only after success: a failed rank must not wait for the others here
    finally:
        dist.destroy_process_group()

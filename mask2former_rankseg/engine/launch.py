"""Start one process per device (or CPU worker) and initialise torch.distributed."""

from __future__ import annotations

import datetime
import logging
import os
import socket
from typing import Any, Callable, Optional, Sequence

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = datetime.timedelta(minutes=30)


def _find_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(main_func: Callable[..., Any], num_gpus_per_machine: int, num_machines: int = 1, machine_rank: int = 0,
           dist_url: Optional[str] = None, args: Sequence[Any] = (),
           timeout: datetime.timedelta = DEFAULT_TIMEOUT) -> Any:
    """Run ``main_func(*args)`` in ``num_gpus_per_machine * num_machines`` processes.

    With one process in total it is a plain call. Under ``torchrun`` (``WORLD_SIZE`` set) the process group
    is initialised from the environment. On a machine without CUDA, ``num_gpus_per_machine`` is the number
    of CPU worker processes (Gloo backend).
    """
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend, timeout=timeout)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        return main_func(*args)
    world_size = num_machines * num_gpus_per_machine
    if world_size <= 1:
        return main_func(*args)
    if dist_url in (None, "auto"):
        if num_machines != 1:
            raise ValueError("--dist-url auto only works on one machine; give tcp://HOST:PORT of machine 0.")
        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    if not torch.cuda.is_available():
        logger.info("No CUDA: starting %d CPU worker processes (Gloo).", num_gpus_per_machine)
    mp.start_processes(
        _distributed_worker, nprocs=num_gpus_per_machine,
        args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, tuple(args), timeout),
        daemon=False, start_method="spawn",
    )
    return None


def _distributed_worker(local_rank: int, main_func, world_size: int, num_per_machine: int, machine_rank: int,
                        dist_url: str, args, timeout) -> None:
    use_cuda = torch.cuda.is_available()
    if use_cuda and num_per_machine > torch.cuda.device_count():
        raise RuntimeError(f"--num-gpus {num_per_machine} exceeds the {torch.cuda.device_count()} visible GPUs.")
    rank = machine_rank * num_per_machine + local_rank
    os.environ["LOCAL_RANK"] = str(local_rank)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo", init_method=dist_url, world_size=world_size,
                            rank=rank, timeout=timeout)
    if use_cuda:
        torch.cuda.set_device(local_rank)
    try:
        main_func(*args)
    finally:
        dist.barrier()
        dist.destroy_process_group()

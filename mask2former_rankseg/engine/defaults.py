"""Command line and run set-up shared by ``train_net.py`` and tools."""

from __future__ import annotations

import argparse
import logging
import os
import platform
import random
import sys
from pathlib import Path

import numpy as np
import torch

from ..utils import comm
from ..utils.logger import setup_logger


def default_argument_parser(epilog: str | None = None) -> argparse.ArgumentParser:
    """detectron2's training CLI: ``--config-file``, ``--eval-only``, ``--resume``, ``--num-gpus``,
    ``--num-machines``, ``--machine-rank``, ``--dist-url`` and trailing ``KEY VALUE`` overrides."""
    parser = argparse.ArgumentParser(
        epilog=epilog or "Example: train_net.py --config-file configs/synthetic/maskformer2_R18_synthetic-rankseg.yaml "
        "SOLVER.MAX_ITER 100", formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config-file", default="", metavar="FILE", help="path to the config file")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUTPUT_DIR/last_checkpoint if it exists (else start from MODEL.WEIGHTS)")
    parser.add_argument("--eval-only", action="store_true", help="only evaluate MODEL.WEIGHTS")
    parser.add_argument("--num-gpus", type=int, default=1, help="processes per machine (GPUs, or CPU workers)")
    parser.add_argument("--num-machines", type=int, default=1)
    parser.add_argument("--machine-rank", type=int, default=0, help="rank of this machine")
    parser.add_argument("--dist-url", default="auto", help="init URL of the process group ('auto': a free local port)")
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER,
                        help="config overrides as KEY VALUE pairs, e.g. SOLVER.BASE_LR 0.001")
    return parser


def default_setup(cfg, args) -> None:
    """Create OUTPUT_DIR, set up logging, log the environment and config, save the merged config,
    seed the RNGs (SEED, or a random seed when < 0) and set cuDNN benchmarking."""
    output_dir = cfg.OUTPUT_DIR
    rank = comm.get_rank()
    if comm.is_main_process() and output_dir:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
    logger = setup_logger(output_dir, distributed_rank=rank)
    logger.info("Rank %d of %d; Python %s; torch %s; CUDA available: %s; platform %s", rank, comm.get_world_size(),
                sys.version.split()[0], torch.__version__, torch.cuda.is_available(), platform.platform())
    logger.info("Command line arguments: %s", args)
    if getattr(args, "config_file", ""):
        logger.info("Config file %s", args.config_file)
    if comm.is_main_process() and output_dir:
        from ..evaluation.evaluator import write_text_atomic

        path = Path(output_dir) / "config.yaml"
        write_text_atomic(path, cfg.dump())
        logger.info("Full config saved to %s", path)
    seed = cfg.SEED if cfg.SEED >= 0 else int.from_bytes(os.urandom(2), "little") + os.getpid()
    seed_all(seed + rank)
    if torch.backends.cudnn.is_available():
        torch.backends.cudnn.benchmark = bool(cfg.CUDNN_BENCHMARK)


def seed_all(seed: int) -> None:
    """Seed Python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    logging.getLogger(__name__).info("Using seed %d", seed)

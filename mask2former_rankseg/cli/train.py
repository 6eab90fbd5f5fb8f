"""Train and evaluate Mask2Former (+ RankSeg) with detectron2's command line (``train_net.py`` and the
``mask2former-rankseg-train`` command).

    mask2former-rankseg-train --config-file CONFIG [--eval-only] [--resume] [--num-gpus N] [--num-machines M]
                        [--machine-rank R] [--dist-url URL] [KEY VALUE ...]
"""

from __future__ import annotations

import logging
import sys
import time

from ..config import ConfigError, get_cfg
from ..config.arguments import require_config_file
from ..engine import (
    Checkpointer,
    CheckpointError,
    OutputDirError,
    Trainer,
    backend_for_device,
    default_argument_parser,
    default_setup,
    launch,
    warn_if_random_weights,
)
from ..engine.defaults import verify_results
from ..evaluation import format_results_table
from ..modeling import validate_model_config
from ..utils import comm

logger = logging.getLogger("mask2former_rankseg")


def load_config(args):
    """The merged (``--config-file``, then ``KEY VALUE`` overrides), validated and frozen config."""
    cfg = get_cfg()
    if args.config_file:
        cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts or [])
    validate_model_config(cfg)
    cfg.freeze()
    return cfg


def setup(args):
    """:func:`load_config`, then the output directory, logging and seeds (:func:`default_setup`)."""
    cfg = load_config(args)
    default_setup(cfg, args)
    return cfg


def _print_results(results, title: str) -> None:
    if not comm.is_main_process() or not results:
        return
    print(f"\n{title}")
    print(format_results_table(results))


def main(args):
    start = time.perf_counter()
    cfg = setup(args)
    if args.eval_only:
        warn_if_random_weights(cfg, getattr(args, "random_weights", False), "--random-weights")
        model = Trainer.build_model(cfg)
        Checkpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        results = Trainer.test(cfg, model)
        if cfg.TEST.AUG.ENABLED:  # single-scale above, multi-scale + flip (tasks "<task>_TTA") here
            results.update(Trainer.test_with_TTA(cfg, model))
        _print_results(results, "Evaluation results")
    else:
        if cfg.TEST.AUG.ENABLED:
            logger.info("TEST.AUG.ENABLED: the multi-scale + flip evaluation runs with --eval-only (as in "
                        "Mask2Former's train_net); evaluations during training are single-scale.")
        trainer = Trainer(cfg)
        trainer.resume_or_load(resume=args.resume)
        results = trainer.train()
        _print_results(results, "Final evaluation results")
    logger.info("Total wall time: %.1f s", time.perf_counter() - start)
    if comm.is_main_process() and results and not verify_results(cfg, results):
        sys.exit(1)
    return results


def cli(argv=None) -> int:
    """Parse ``argv`` and run :func:`run_cli`; returns the exit status (2: a bad command line, config, checkpoint or
    output directory)."""
    parser = default_argument_parser()
    return run_cli(parser, parser.parse_args(argv))


def run_cli(parser, args) -> int:
    """The job for parsed ``args``, in ``--num-gpus`` processes (``parser`` reports usage errors)."""
    require_config_file(parser, args)
    try:
        # read the config here first: a bad one fails before any process starts, and MODEL.DEVICE picks
        # the process-group backend (NCCL for CUDA, Gloo for CPU workers)
        backend = backend_for_device(load_config(args).MODEL.DEVICE)
        launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
               dist_url=args.dist_url, args=(args,), backend=backend)
    except (ConfigError, CheckpointError, OutputDirError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


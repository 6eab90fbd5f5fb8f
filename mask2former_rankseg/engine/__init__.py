"""Training and evaluation engine: trainer and hooks, optimizer and LR schedules, checkpoints, launch,
command line, predictor."""

from .checkpoint import Checkpointer, CheckpointError, IncompatibleKeys
from .defaults import (
    OutputDirError,
    check_output_dir,
    default_argument_parser,
    default_setup,
    resolve_device,
    seed_all_rng,
    verify_results,
    warn_if_random_weights,
)
from .hooks import EvalHook, HookBase, IterationTimer, LRScheduler, PeriodicCheckpointer, PeriodicWriter
from .launch import backend_for_device, launch
from .optim import (
    LRMultiplier,
    WarmupParamScheduler,
    WarmupPolyParamScheduler,
    build_gradient_clipper,
    build_lr_scheduler,
    build_optimizer,
    clip_gradients,
    get_param_groups,
)
from .predictor import ModelUnavailableError, Predictor, VideoPredictor, check_model_available, is_video_config
from .trainer import Trainer

__all__ = [
    "Checkpointer",
    "CheckpointError",
    "EvalHook",
    "HookBase",
    "IncompatibleKeys",
    "IterationTimer",
    "LRMultiplier",
    "LRScheduler",
    "ModelUnavailableError",
    "OutputDirError",
    "PeriodicCheckpointer",
    "PeriodicWriter",
    "Predictor",
    "Trainer",
    "VideoPredictor",
    "WarmupParamScheduler",
    "WarmupPolyParamScheduler",
    "backend_for_device",
    "build_gradient_clipper",
    "build_lr_scheduler",
    "build_optimizer",
    "check_model_available",
    "check_output_dir",
    "clip_gradients",
    "default_argument_parser",
    "default_setup",
    "get_param_groups",
    "is_video_config",
    "launch",
    "resolve_device",
    "warn_if_random_weights",
    "seed_all_rng",
    "verify_results",
]

"""Training and evaluation engine: trainer, optimizer/schedules, checkpoints, launch, predictor."""

from .checkpoint import Checkpointer, CheckpointError, IncompatibleKeys
from .defaults import default_argument_parser, default_setup
from .hooks import HookBase
from .launch import launch
from .optim import build_lr_scheduler, build_optimizer, clip_gradients, get_param_groups
from .predictor import Predictor
from .trainer import Trainer

__all__ = [
    "Checkpointer",
    "CheckpointError",
    "HookBase",
    "IncompatibleKeys",
    "Predictor",
    "Trainer",
    "build_lr_scheduler",
    "build_optimizer",
    "clip_gradients",
    "default_argument_parser",
    "default_setup",
    "get_param_groups",
    "launch",
]

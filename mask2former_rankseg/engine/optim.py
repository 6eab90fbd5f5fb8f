"""Optimizer with RankSeg/Mask2Former parameter groups, gradient clipping, and LR schedules."""

from __future__ import annotations

import logging
import math
from typing import Any, Dict, Iterable, List, Optional

import torch
from fvcore.common.param_scheduler import (
    CompositeParamScheduler,
    ConstantParamScheduler,
    CosineParamScheduler,
    LinearParamScheduler,
    MultiStepParamScheduler,
    ParamScheduler,
    PolynomialDecayParamScheduler,
)
from torch import nn

logger = logging.getLogger(__name__)

NORM_MODULE_TYPES = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.GroupNorm, nn.InstanceNorm1d,
    nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LayerNorm, nn.LocalResponseNorm,
)
NO_DECAY_PARAM_NAMES = ("relative_position_bias_table", "absolute_pos_embed")


def get_param_groups(model: nn.Module, *, base_lr: float, weight_decay: float, weight_decay_norm: float,
                     weight_decay_embed: float, backbone_multiplier: float = 1.0,
                     mlhead_multiplier: float = 1.0) -> List[Dict[str, Any]]:
    """Parameter groups as upstream RankSeg's ``build_optimizer``.

    lr x ``backbone_multiplier`` under modules named ``*backbone*``, x ``mlhead_multiplier`` under ``*ml_head*``;
    ``weight_decay_norm`` for norm layers, ``weight_decay_embed`` for embeddings and ``cls_emb``, 0 for
    Swin's position tables. Parameters with equal hyper-parameters share one group; shared parameters
    appear once.
    """
    groups: Dict[tuple, List[nn.Parameter]] = {}
    seen = set()
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or param in seen:
                continue
            seen.add(param)
            lr, wd = base_lr, weight_decay
            if "backbone" in module_name:
                lr *= backbone_multiplier
            if "ml_head" in module_name:
                lr *= mlhead_multiplier
            if param_name in NO_DECAY_PARAM_NAMES:
                wd = 0.0
            if isinstance(module, NORM_MODULE_TYPES):
                wd = weight_decay_norm
            if isinstance(module, nn.Embedding) or "cls_emb" in f"{module_name}.{param_name}":
                wd = weight_decay_embed
            groups.setdefault((lr, wd), []).append(param)
    out = [{"params": params, "lr": lr, "weight_decay": wd} for (lr, wd), params in groups.items()]
    for g in out:
        logger.debug("param group: %d tensors, lr %.3g, weight decay %.3g", len(g["params"]), g["lr"],
                     g["weight_decay"])
    return out


def build_optimizer(cfg, model: nn.Module) -> torch.optim.Optimizer:
    """``SOLVER.OPTIMIZER`` ("ADAMW" or "SGD") over :func:`get_param_groups`."""
    s = cfg.SOLVER
    groups = get_param_groups(
        model, base_lr=s.BASE_LR, weight_decay=s.WEIGHT_DECAY, weight_decay_norm=s.WEIGHT_DECAY_NORM,
        weight_decay_embed=s.WEIGHT_DECAY_EMBED, backbone_multiplier=s.BACKBONE_MULTIPLIER,
        mlhead_multiplier=s.MLHEAD_MULTIPLIER,
    )
    name = s.OPTIMIZER.upper()
    if name == "SGD":
        return torch.optim.SGD(groups, s.BASE_LR, momentum=s.MOMENTUM, nesterov=s.NESTEROV)
    if name == "ADAMW":
        return torch.optim.AdamW(groups, s.BASE_LR)
    raise ValueError(f"SOLVER.OPTIMIZER={s.OPTIMIZER!r} is not supported; use 'ADAMW' or 'SGD'.")


def clip_gradients(cfg, parameters: Iterable[nn.Parameter]) -> Optional[float]:
    """Apply ``SOLVER.CLIP_GRADIENTS`` (call after unscaling AMP gradients). Returns the total norm for
    ``full_model`` clipping, else None."""
    c = cfg.SOLVER.CLIP_GRADIENTS
    if not c.ENABLED:
        return None
    params = [p for p in parameters if p.grad is not None]
    if c.CLIP_TYPE == "full_model":
        return float(torch.nn.utils.clip_grad_norm_(params, c.CLIP_VALUE, norm_type=c.NORM_TYPE))
    if c.CLIP_TYPE == "value":
        torch.nn.utils.clip_grad_value_(params, c.CLIP_VALUE)
        return None
    if c.CLIP_TYPE == "norm":
        for p in params:
            torch.nn.utils.clip_grad_norm_([p], c.CLIP_VALUE, norm_type=c.NORM_TYPE)
        return None
    raise ValueError(f"SOLVER.CLIP_GRADIENTS.CLIP_TYPE={c.CLIP_TYPE!r}; use 'full_model', 'value' or 'norm'.")


class WarmupParamScheduler(CompositeParamScheduler):
    """``scheduler`` preceded by a warmup from ``warmup_factor`` x its start value over ``warmup_length``
    (a fraction of training)."""

    def __init__(self, scheduler: ParamScheduler, warmup_factor: float, warmup_length: float,
                 warmup_method: str = "linear"):
        end_value = scheduler(warmup_length)
        start_value = warmup_factor * scheduler(0.0)
        if warmup_method == "constant":
            warmup = ConstantParamScheduler(start_value)
        elif warmup_method == "linear":
            warmup = LinearParamScheduler(start_value, end_value)
        else:
            raise ValueError(f"SOLVER.WARMUP_METHOD={warmup_method!r}; use 'linear' or 'constant'.")
        super().__init__([warmup, scheduler], interval_scaling=["rescaled", "fixed"],
                         lengths=[warmup_length, 1 - warmup_length])


class LRMultiplier(torch.optim.lr_scheduler.LRScheduler):
    """Sets each group's lr to its initial lr x ``multiplier(iter / max_iter)`` on every ``step()``."""

    def __init__(self, optimizer: torch.optim.Optimizer, multiplier: ParamScheduler, max_iter: int,
                 last_iter: int = -1):
        self._multiplier = multiplier
        self._max_iter = max_iter
        super().__init__(optimizer, last_epoch=last_iter)

    def state_dict(self) -> Dict[str, Any]:
        return {"base_lrs": self.base_lrs, "last_epoch": self.last_epoch}

    def get_lr(self) -> List[float]:
        factor = self._multiplier(min(self.last_epoch / self._max_iter, 1.0 - 1e-12))
        return [base * factor for base in self.base_lrs]


def build_lr_scheduler(cfg, optimizer: torch.optim.Optimizer) -> LRMultiplier:
    """``SOLVER.LR_SCHEDULER_NAME``: WarmupPolyLR, WarmupMultiStepLR or WarmupCosineLR, per iteration."""
    s = cfg.SOLVER
    name = s.LR_SCHEDULER_NAME
    if name == "WarmupPolyLR":
        # lr = base * (1 - it / max_iter) ** power (+ constant ending), as detectron2's DeepLab project
        sched = _PolyWithConstantEnding(s.POLY_LR_POWER, s.POLY_LR_CONSTANT_ENDING)
    elif name == "WarmupMultiStepLR":
        steps = [x for x in s.STEPS if x <= s.MAX_ITER]
        sched = MultiStepParamScheduler(values=[s.GAMMA**k for k in range(len(steps) + 1)],
                                        milestones=steps, num_updates=s.MAX_ITER)
    elif name == "WarmupCosineLR":
        end = s.BASE_LR_END / s.BASE_LR if s.BASE_LR else 0.0
        sched = CosineParamScheduler(1, end)
    else:
        raise ValueError(
            f"SOLVER.LR_SCHEDULER_NAME={name!r}; use WarmupPolyLR, WarmupMultiStepLR or WarmupCosineLR."
        )
    warmup_length = min(s.WARMUP_ITERS / s.MAX_ITER, 1.0)
    if warmup_length > 0:
        sched = WarmupParamScheduler(sched, s.WARMUP_FACTOR, warmup_length, s.WARMUP_METHOD)
    return LRMultiplier(optimizer, multiplier=sched, max_iter=s.MAX_ITER)


class _PolyWithConstantEnding(ParamScheduler):
    def __init__(self, power: float, constant_ending: float):
        self._poly = PolynomialDecayParamScheduler(1.0, power)
        self._constant_ending = constant_ending

    def __call__(self, where: float) -> float:
        value = self._poly(where)
        if self._constant_ending > 0 and value < self._constant_ending:
            return self._constant_ending
        return value if math.isfinite(value) else 0.0

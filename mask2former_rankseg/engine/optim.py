"""Optimizer with upstream RankSeg's parameter groups, gradient clipping, and iteration LR schedules.

Facts kept from upstream (RankSeg's ``train_net.py``, detectron2's ``solver`` and DeepLab project):

* one parameter group per parameter; ``lr x SOLVER.BACKBONE_MULTIPLIER`` when the owning module's path
  contains ``backbone``, ``x SOLVER.MLHEAD_MULTIPLIER`` when it contains ``ml_head``; weight decay
  ``WEIGHT_DECAY_NORM`` for norm layers, ``WEIGHT_DECAY_EMBED`` for ``nn.Embedding`` and modules whose
  path contains ``cls_emb``, 0 for Swin's ``relative_position_bias_table`` / ``absolute_pos_embed``.
* on top of these, the config's per-parameter rules (``SOLVER.PARAM_RULES``, mmcv's ``custom_keys``) and BEiT's
  layer-wise lr decay (``SOLVER.LAYER_DECAY_RATE``), see ``param_rules.py``; their defaults change nothing.
* ``full_model`` clipping clips the global gradient norm of all parameters; ``value`` / ``norm`` clip
  each parameter on its own (detectron2).
* ``WarmupPolyLR``: ``lr = base * warmup(it) * (1 - it / max_iter) ** power`` with a linear (or constant)
  warmup factor and an optional constant ending; the other schedules use detectron2's warmup, which
  ramps linearly to the schedule's value at the end of the warmup. ``SOLVER.BASE_LR_END`` (detectron2's key
  for the cosine schedule's end, default 0) is also the poly schedule's end, as mmseg's ``min_lr``:
  ``lr = (base - end) * (1 - it / max_iter) ** power + end`` (``end`` scaled with each group's multiplier).
* mmcv's ``poly`` policy with ``warmup="linear"`` is ``WarmupPolyLR`` with ``WARMUP_METHOD: linear``,
  ``WARMUP_FACTOR = warmup_ratio``, ``WARMUP_ITERS = warmup_iters``, ``POLY_LR_POWER = power``: both give
  ``poly(it) * (ratio + (1 - ratio) * it / warmup_iters)`` before ``warmup_iters`` and ``poly(it)`` after. mmcv's
  ``min_lr`` is one absolute value for every group, ``BASE_LR_END`` is scaled by each group's lr multiplier: the
  same when ``min_lr`` is 0 or every group has the base lr.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

import torch
from fvcore.common.param_scheduler import (
    CompositeParamScheduler,
    ConstantParamScheduler,
    CosineParamScheduler,
    LinearParamScheduler,
    MultiStepParamScheduler,
    ParamScheduler,
    PolynomialDecayParamScheduler,
    StepWithFixedGammaParamScheduler,
)
from torch import nn

from .param_rules import layer_decay_scale, match_param_rule, parse_param_rules

logger = logging.getLogger(__name__)

__all__ = [
    "NORM_MODULE_TYPES",
    "LRMultiplier",
    "WarmupParamScheduler",
    "WarmupPolyParamScheduler",
    "build_gradient_clipper",
    "build_lr_scheduler",
    "build_optimizer",
    "clip_gradients",
    "fused_step_supported",
    "get_param_groups",
]

NORM_MODULE_TYPES = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.GroupNorm, nn.InstanceNorm1d,
    nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LayerNorm, nn.LocalResponseNorm,
)
"""Modules whose parameters get ``SOLVER.WEIGHT_DECAY_NORM`` (FrozenBatchNorm2d has no parameters)."""

NO_DECAY_PARAM_NAMES = ("relative_position_bias_table", "absolute_pos_embed")

SUPPORTED_SCHEDULERS = ("WarmupPolyLR", "WarmupMultiStepLR", "WarmupCosineLR", "WarmupStepWithFixedGammaLR")


# --------------------------------------------------------------------------------------------------
# parameter groups and optimizer
# --------------------------------------------------------------------------------------------------
def get_param_groups(model: nn.Module, *, base_lr: float, weight_decay: float, weight_decay_norm: float,
                     weight_decay_embed: float, backbone_multiplier: float = 1.0,
                     mlhead_multiplier: float = 1.0, param_rules: Sequence = (),
                     layer_decay_rate: float = 1.0) -> List[Dict[str, Any]]:
    """One ``{"params": [p], "lr", "weight_decay", "name"}`` group per trainable parameter, in
    ``named_modules`` order, shared parameters once (upstream RankSeg's ``build_optimizer``).

    The built-in rules look at the path of the module that owns the parameter, exactly as upstream does. So the
    multi-label head's ``ml_head.cls_emb`` (an ``nn.Parameter`` of module ``ml_head``) gets the ordinary
    ``weight_decay`` -- what upstream's published RankSeg models were trained with -- while a *module*
    named ``cls_emb`` (or any ``nn.Embedding``) gets ``weight_decay_embed``.

    Then, for a parameter whose full name matches one of ``param_rules`` (``[substring, lr_mult, decay_mult]``
    entries, tried in :func:`~.param_rules.parse_param_rules`' order: the longest substring first), lr
    ``base_lr * lr_mult`` and weight decay ``weight_decay * decay_mult`` replace the built-in rules' (mmcv's
    ``custom_keys``). Last, with ``layer_decay_rate`` != 1, each lr is
    multiplied by :func:`~.param_rules.layer_decay_scale`'s factor (the weight decay is unchanged).
    """
    rules = parse_param_rules(param_rules)
    scale = layer_decay_scale(model, layer_decay_rate) if layer_decay_rate != 1.0 else None
    groups: List[Dict[str, Any]] = []
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
            if any(n in param_name for n in NO_DECAY_PARAM_NAMES):
                wd = 0.0
            if isinstance(module, NORM_MODULE_TYPES):
                wd = weight_decay_norm
            if isinstance(module, nn.Embedding) or "cls_emb" in module_name:
                wd = weight_decay_embed
            name = f"{module_name}.{param_name}" if module_name else param_name
            rule = match_param_rule(name, rules)
            if rule is not None:
                lr, wd = base_lr * rule.lr_mult, weight_decay * rule.decay_mult
            if scale is not None:
                lr *= scale(name)
            groups.append({"params": [param], "lr": lr, "weight_decay": wd, "name": name})
    if logger.isEnabledFor(logging.DEBUG):
        summary = Counter((g["lr"], g["weight_decay"]) for g in groups)
        lines = [f"  lr {lr:.4g}, weight decay {wd:.4g}: {n} tensors" for (lr, wd), n in sorted(summary.items())]
        logger.debug("Optimizer parameter groups (%d tensors):\n%s", len(groups), "\n".join(lines))
    return groups


def fused_step_supported(groups: Sequence[Dict[str, Any]]) -> Optional[bool]:
    """True when every parameter is a floating-point tensor on the CPU or a CUDA device (one device): torch's fused
    AdamW / SGD kernels then update each group in one call instead of about ten per parameter (the same formulas;
    results agree to float32 rounding). None (torch's default, per-parameter loops) otherwise."""
    params = [p for g in groups for p in g["params"]]
    devices = {p.device for p in params}
    if len(devices) == 1 and next(iter(devices)).type in ("cpu", "cuda") and all(p.is_floating_point() for p in params):
        return True
    return None


def build_optimizer(cfg, model: nn.Module) -> torch.optim.Optimizer:
    """``SOLVER.OPTIMIZER`` ("SGD" with ``MOMENTUM`` / ``NESTEROV``, or "ADAMW" with torch's betas (0.9, 0.999) and
    eps 1e-8, as mmcv's AdamW) over :func:`get_param_groups` (each group carries its own weight decay), with
    ``SOLVER.PARAM_RULES`` and ``SOLVER.LAYER_DECAY_RATE``, with torch's fused step where
    :func:`fused_step_supported` and ``SOLVER.FUSED_OPTIMIZER``. Gradient clipping is not folded into the
    optimizer: the trainer calls :func:`build_gradient_clipper`'s clipper after unscaling AMP gradients."""
    s = cfg.SOLVER
    groups = get_param_groups(
        model, base_lr=s.BASE_LR, weight_decay=s.WEIGHT_DECAY, weight_decay_norm=s.WEIGHT_DECAY_NORM,
        weight_decay_embed=s.WEIGHT_DECAY_EMBED, backbone_multiplier=s.BACKBONE_MULTIPLIER,
        mlhead_multiplier=s.MLHEAD_MULTIPLIER, param_rules=s.PARAM_RULES,
        layer_decay_rate=float(s.LAYER_DECAY_RATE),
    )
    if not groups:
        raise ValueError("The model has no trainable parameters (all have requires_grad=False); nothing to train.")
    name = str(s.OPTIMIZER).upper()
    fused = fused_step_supported(groups) if s.FUSED_OPTIMIZER else None
    if name == "SGD":
        return torch.optim.SGD(groups, s.BASE_LR, momentum=s.MOMENTUM, nesterov=bool(s.NESTEROV), fused=fused)
    if name == "ADAMW":
        return torch.optim.AdamW(groups, s.BASE_LR, fused=fused)
    raise ValueError(f"SOLVER.OPTIMIZER={s.OPTIMIZER!r} is not supported; use 'ADAMW' or 'SGD'.")


# --------------------------------------------------------------------------------------------------
# gradient clipping
# --------------------------------------------------------------------------------------------------
def build_gradient_clipper(cfg) -> Optional[Callable[[Iterable[torch.Tensor]], Optional[float]]]:
    """The clipper of ``SOLVER.CLIP_GRADIENTS`` (None when disabled). Call it on the model's parameters
    after the backward pass and after ``GradScaler.unscale_``; it returns the total gradient norm before
    clipping for ``full_model`` and None otherwise.

    * ``full_model``: ``clip_grad_norm_`` over all parameters together (skipped when ``CLIP_VALUE <= 0``,
      as upstream does);
    * ``norm``: ``clip_grad_norm_`` on each parameter separately; ``value``: ``clip_grad_value_``.
    """
    c = cfg.SOLVER.CLIP_GRADIENTS
    if not c.ENABLED:
        return None
    clip_type, clip_value, norm_type = str(c.CLIP_TYPE), float(c.CLIP_VALUE), float(c.NORM_TYPE)
    if clip_type == "full_model":
        if clip_value <= 0:
            return None

        def clip_full_model(params: Iterable[torch.Tensor]) -> Optional[float]:
            grads = [p for p in params if p.grad is not None]
            if not grads:
                return None
            return float(torch.nn.utils.clip_grad_norm_(grads, clip_value, norm_type=norm_type))

        return clip_full_model
    if clip_type == "norm":

        def clip_each_norm(params: Iterable[torch.Tensor]) -> None:
            for p in params:
                if p.grad is not None:
                    torch.nn.utils.clip_grad_norm_(p, clip_value, norm_type=norm_type)

        return clip_each_norm
    if clip_type == "value":

        def clip_each_value(params: Iterable[torch.Tensor]) -> None:
            grads = [p for p in params if p.grad is not None]
            if grads:
                torch.nn.utils.clip_grad_value_(grads, clip_value)

        return clip_each_value
    raise ValueError(
        f"SOLVER.CLIP_GRADIENTS.CLIP_TYPE={clip_type!r} is not supported; use 'full_model', 'norm' or 'value'."
    )


def clip_gradients(cfg, parameters: Iterable[torch.Tensor]) -> Optional[float]:
    """Apply ``SOLVER.CLIP_GRADIENTS`` once (see :func:`build_gradient_clipper`)."""
    clipper = build_gradient_clipper(cfg)
    return clipper(parameters) if clipper is not None else None


# --------------------------------------------------------------------------------------------------
# LR schedules
# --------------------------------------------------------------------------------------------------
class WarmupParamScheduler(CompositeParamScheduler):
    """detectron2's warmup: ``scheduler`` preceded by a ramp from ``warmup_factor x scheduler(0)`` to
    ``scheduler(warmup_length)`` (linear) or a constant ``warmup_factor x scheduler(0)``, over the first
    ``warmup_length`` (fraction of training). With ``rescale_interval`` the schedule after warmup is
    stretched over the remaining training instead of continuing where it is."""

    def __init__(self, scheduler: ParamScheduler, warmup_factor: float, warmup_length: float,
                 warmup_method: str = "linear", rescale_interval: bool = False):
        end_value = scheduler(0.0) if rescale_interval else scheduler(warmup_length)
        start_value = warmup_factor * scheduler(0.0)
        if warmup_method == "constant":
            warmup: ParamScheduler = ConstantParamScheduler(start_value)
        elif warmup_method == "linear":
            warmup = LinearParamScheduler(start_value, end_value)
        else:
            raise ValueError(f"SOLVER.WARMUP_METHOD={warmup_method!r} is not supported; use 'linear' or 'constant'.")
        super().__init__(
            [warmup, scheduler],
            interval_scaling=["rescaled", "rescaled" if rescale_interval else "fixed"],
            lengths=[warmup_length, 1.0 - warmup_length],
        )


class WarmupPolyParamScheduler(ParamScheduler):
    """Multiplier of detectron2's DeepLab ``WarmupPolyLR`` at ``where = it / max_iter``:
    ``warmup(it) * (1 - where) ** power``, where ``warmup`` goes linearly from ``warmup_factor`` at 0 to 1
    at ``warmup_length`` ("linear") or stays ``warmup_factor`` ("constant"), then is 1. After warmup the
    value never drops below ``constant_ending`` (when > 0). With ``end_value`` > 0 the polynomial decays to it
    instead of 0: ``end_value + (1 - end_value) * (1 - where) ** power`` (mmseg's ``min_lr`` / base lr)."""

    def __init__(self, power: float, constant_ending: float = 0.0, warmup_factor: float = 1.0,
                 warmup_length: float = 0.0, warmup_method: str = "linear", end_value: float = 0.0):
        if warmup_method not in ("linear", "constant"):
            raise ValueError(f"SOLVER.WARMUP_METHOD={warmup_method!r} is not supported; use 'linear' or 'constant'.")
        self._poly = PolynomialDecayParamScheduler(1.0, power)
        self._constant_ending = float(constant_ending)
        self._warmup_factor = float(warmup_factor)
        self._warmup_length = float(warmup_length)
        self._warmup_method = warmup_method
        self._end_value = float(end_value)

    def _warmup(self, where: float) -> float:
        if where >= self._warmup_length:
            return 1.0
        if self._warmup_method == "constant":
            return self._warmup_factor
        alpha = where / self._warmup_length
        return self._warmup_factor * (1.0 - alpha) + alpha

    def __call__(self, where: float) -> float:
        factor = self._warmup(where)
        value = self._poly(min(max(where, 0.0), 1.0))
        if self._end_value > 0:
            value = self._end_value + (1.0 - self._end_value) * value
        if self._constant_ending > 0 and factor == 1.0 and value < self._constant_ending:
            return self._constant_ending
        return factor * value


class LRMultiplier(torch.optim.lr_scheduler.LRScheduler):
    """Per-iteration LR: each group's initial lr x ``multiplier(last_epoch / max_iter)`` (detectron2).

    ``last_epoch`` counts iterations. The state is ``{"base_lrs", "last_epoch"}`` (fvcore schedulers are
    stateless), so it round-trips through ``state_dict`` / ``load_state_dict``.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, multiplier: ParamScheduler, max_iter: int,
                 last_iter: int = -1):
        if not isinstance(multiplier, ParamScheduler):
            raise TypeError(f"LRMultiplier needs an fvcore ParamScheduler, got {type(multiplier).__name__}.")
        if max_iter <= 0:
            raise ValueError(f"SOLVER.MAX_ITER must be positive, got {max_iter}.")
        self._multiplier = multiplier
        self._max_iter = int(max_iter)
        super().__init__(optimizer, last_epoch=last_iter)

    def state_dict(self) -> Dict[str, Any]:
        return {"base_lrs": list(self.base_lrs), "last_epoch": self.last_epoch}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.base_lrs = list(state_dict["base_lrs"])
        self.last_epoch = int(state_dict["last_epoch"])
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def multiplier_at(self, iteration: int) -> float:
        where = min(max(iteration / self._max_iter, 0.0), 1.0)
        return float(self._multiplier(where))

    def get_lr(self) -> List[float]:
        factor = self.multiplier_at(self.last_epoch)
        return [base * factor for base in self.base_lrs]


def build_lr_multiplier(cfg) -> ParamScheduler:
    """The fvcore multiplier of ``SOLVER.LR_SCHEDULER_NAME`` including its warmup."""
    s = cfg.SOLVER
    name = s.LR_SCHEDULER_NAME
    max_iter = int(s.MAX_ITER)
    warmup_length = min(max(s.WARMUP_ITERS / max_iter, 0.0), 1.0)
    if name == "WarmupPolyLR":
        if s.BASE_LR_END > 0 and s.BASE_LR <= 0:
            raise ValueError(f"SOLVER.BASE_LR_END={s.BASE_LR_END} needs SOLVER.BASE_LR > 0, got {s.BASE_LR}.")
        end_value = s.BASE_LR_END / s.BASE_LR if s.BASE_LR_END > 0 else 0.0
        return WarmupPolyParamScheduler(s.POLY_LR_POWER, s.POLY_LR_CONSTANT_ENDING, s.WARMUP_FACTOR, warmup_length,
                                        s.WARMUP_METHOD, end_value)
    if name == "WarmupMultiStepLR":
        steps = [x for x in s.STEPS if x <= max_iter]
        if len(steps) != len(s.STEPS):
            logger.warning("SOLVER.STEPS %s has values larger than SOLVER.MAX_ITER=%d; they are ignored.",
                           tuple(s.STEPS), max_iter)
        sched: ParamScheduler = MultiStepParamScheduler(
            values=[s.GAMMA**k for k in range(len(steps) + 1)], milestones=steps, num_updates=max_iter)
    elif name == "WarmupCosineLR":
        if s.BASE_LR <= 0:
            raise ValueError(f"WarmupCosineLR needs SOLVER.BASE_LR > 0, got {s.BASE_LR}.")
        sched = CosineParamScheduler(1.0, s.BASE_LR_END / s.BASE_LR)
    elif name == "WarmupStepWithFixedGammaLR":
        sched = StepWithFixedGammaParamScheduler(base_value=1.0, gamma=s.GAMMA, num_decays=s.NUM_DECAYS,
                                                 num_updates=max_iter)
    else:
        raise ValueError(f"SOLVER.LR_SCHEDULER_NAME={name!r} is not supported; use one of {SUPPORTED_SCHEDULERS}.")
    if warmup_length <= 0:
        return sched
    return WarmupParamScheduler(sched, s.WARMUP_FACTOR, warmup_length, s.WARMUP_METHOD, bool(s.RESCALE_INTERVAL))


def build_lr_scheduler(cfg, optimizer: torch.optim.Optimizer) -> LRMultiplier:
    """``SOLVER.LR_SCHEDULER_NAME`` (WarmupPolyLR, WarmupMultiStepLR, WarmupCosineLR,
    WarmupStepWithFixedGammaLR) as an :class:`LRMultiplier` stepped once per iteration."""
    return LRMultiplier(optimizer, build_lr_multiplier(cfg), max_iter=cfg.SOLVER.MAX_ITER)

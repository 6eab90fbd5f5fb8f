"""Normalisation layers selected by name (``BN``, ``SyncBN``, ``FrozenBN``, ``GN``, ``LN``); ``SyncBN`` also
synchronises across CPU (Gloo) processes."""

from typing import Any, Callable, Optional, Union

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F
from torch.nn.modules._functions import SyncBatchNorm as TorchSyncBatchNormFn

# Devices on which torch's own SyncBatchNorm kernels run (it raises for any other, e.g. the CPU).
_TORCH_SYNC_BN_DEVICES = ("cuda", "hpu", "xpu")


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d whose statistics and affine parameters are fixed buffers.

    Buffers (detectron2's names): ``weight``, ``bias``, ``running_mean``, ``running_var`` of shape [C].
    Computes ``x * scale + shift`` with ``scale = weight / sqrt(running_var + eps)``.
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features) - eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.view(1, -1, 1, 1).to(x.dtype) + shift.view(1, -1, 1, 1).to(x.dtype)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # Checkpoints written from a BatchNorm2d carry a counter we do not keep.
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def __repr__(self) -> str:
        return f"FrozenBatchNorm2d(num_features={self.num_features}, eps={self.eps})"

    @classmethod
    def convert_frozen_batchnorm(cls, module: nn.Module) -> nn.Module:
        """Return ``module`` with every BatchNorm2d/SyncBatchNorm replaced by a frozen copy."""
        if isinstance(module, (nn.BatchNorm2d, nn.SyncBatchNorm)):  # SyncBatchNorm2d is a BatchNorm2d
            frozen = cls(module.num_features, module.eps)
            if module.affine:
                frozen.weight.data.copy_(module.weight.detach())
                frozen.bias.data.copy_(module.bias.detach())
            if module.running_mean is not None:
                frozen.running_mean.data.copy_(module.running_mean)
                frozen.running_var.data.copy_(module.running_var)
            return frozen
        for name, child in module.named_children():
            new_child = cls.convert_frozen_batchnorm(child)
            if new_child is not child:
                module.add_module(name, new_child)
        return module


class SyncBatchNorm2d(nn.BatchNorm2d):
    """Batch normalisation with statistics over the whole batch of every process (``SyncBN``).

    On CUDA (and the other devices torch's kernels support) it runs torch's own synchronised batch norm
    (the function behind :class:`torch.nn.SyncBatchNorm`). On the CPU, where torch's raises ("SyncBatchNorm
    expected input tensor to be on GPU", and DistributedDataParallel refuses CPU modules holding one), e.g.
    in Gloo runs with ``MODEL.DEVICE cpu``, each process sums ``x`` and ``x**2`` per channel (in float64)
    with its element count, one differentiable all-reduce adds them up, and ``x`` is normalised with the
    global mean and biased variance; the running variance gets the unbiased one, as BatchNorm's. The
    gradient flows back through the all-reduce, so each process's input gradient includes what its inputs
    contributed to the statistics of the others. With one process, in eval mode, or without
    ``torch.distributed`` it is plain batch norm.

    A ``BatchNorm2d`` subclass with its names and buffers (``weight``, ``bias``, ``running_mean``,
    ``running_var``, ``num_batches_tracked``): checkpoints move freely between BN and SyncBN, and norm-aware
    code (weight decay groups, FrozenBN conversion) treats it as batch norm.

    Input: [N, C, H, W]; a process may hold no sample (N = 0) and still takes part in the all-reduce.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Optional[float] = 0.1, affine: bool = True,
                 track_running_stats: bool = True, process_group: Optional[Any] = None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        self.process_group = process_group

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        world_size = self._sync_world_size()
        if world_size <= 1:
            return super().forward(input)
        self._check_input_dim(input)
        factor = self._momentum_factor()
        if input.device.type in _TORCH_SYNC_BN_DEVICES:
            return TorchSyncBatchNormFn.apply(input, self.weight, self.bias, self.running_mean, self.running_var,
                                               self.eps, factor, self._group(), world_size)
        return self._all_reduce_batch_norm(input, factor)

    def _group(self):
        return self.process_group or dist.group.WORLD

    def _sync_world_size(self) -> int:
        """Processes to synchronise with: > 1 only when training under an initialised process group."""
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return 1
        return dist.get_world_size(self._group())

    def _momentum_factor(self) -> float:
        """Counts this batch and returns the running-statistics update factor, as ``BatchNorm`` does."""
        if not self.track_running_stats:
            return 0.0
        self.num_batches_tracked.add_(1)
        return 1.0 / float(self.num_batches_tracked) if self.momentum is None else float(self.momentum)

    def _all_reduce_batch_norm(self, x: torch.Tensor, factor: float) -> torch.Tensor:
        channels = x.shape[1]
        dims = [0, 2, 3]
        x64 = x.double()
        local_count = x.new_full((1,), x.numel() // channels, dtype=torch.float64)
        local = torch.cat([x64.sum(dims), (x64 * x64).sum(dims), local_count])  # [2C + 1]
        total = _AllReduceSum.apply(local, self._group())
        count = float(total[-1].detach())
        if count < 1:
            raise ValueError("SyncBatchNorm2d got an empty batch on every process.")
        mean = total[:channels] / count
        var = (total[channels:2 * channels] / count - mean * mean).clamp_min(0.0)
        if self.track_running_stats:
            with torch.no_grad():
                unbiased = var * (count / max(count - 1.0, 1.0))
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)
        scale = torch.rsqrt(var + self.eps)
        if self.weight is not None:
            scale = scale * self.weight.double()
        shift = -mean * scale if self.bias is None else self.bias.double() - mean * scale
        return x * scale.to(x.dtype).view(1, -1, 1, 1) + shift.to(x.dtype).view(1, -1, 1, 1)


class _AllReduceSum(torch.autograd.Function):
    """Sum of a tensor over the processes of ``group``; the gradient of every process's input is the sum of
    the output gradients of all processes (each output is the sum of every input)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, group) -> torch.Tensor:
        ctx.group = group
        total = tensor.clone()
        dist.all_reduce(total, group=group)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of a [B, C, H, W] map."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


_NORMS = {
    "BN": nn.BatchNorm2d,
    "SyncBN": SyncBatchNorm2d,
    "FrozenBN": FrozenBatchNorm2d,
    "GN": lambda channels: nn.GroupNorm(32, channels),
    "LN": LayerNorm2d,
}


def get_norm(norm: Union[str, Callable[[int], nn.Module], None], out_channels: int) -> Optional[nn.Module]:
    """Build the normalisation layer named ``norm`` ("" or None: no norm) for ``out_channels``."""
    if norm is None or norm == "":
        return None
    if isinstance(norm, str):
        if norm not in _NORMS:
            raise ValueError(f"Unknown norm {norm!r}; expected one of {sorted(_NORMS)} or ''.")
        norm = _NORMS[norm]
    return norm(out_channels)

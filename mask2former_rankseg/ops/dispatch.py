"""One entry point for multi-scale deformable attention, whatever backend runs it.

Backends: ``"reference"`` (pure PyTorch, always there), and ``"cpu"`` / ``"cuda"`` kernels when the
compiled extension ``mask2former_rankseg._C`` is importable and provides them. Importing this package
never fails: the extension is imported lazily, once, and a missing or broken one is logged once and the
reference path is used. Set ``MASK2FORMER_RANKSEG_FORCE_REFERENCE=1`` to force the reference path.

The extension (``mask2former_rankseg/ops/csrc``, built by ``setup.py``) exports, for each device kind it was
built for (``"cpu"`` always, ``"cuda"`` optionally), ``ms_deform_attn_{kind}_forward(value, spatial_shapes,
level_start_index, sampling_locations, attention_weights) -> [N, Q, H*D]`` and
``ms_deform_attn_{kind}_backward(..., grad_output) -> (grad_value, grad_sampling_locations,
grad_attention_weights)``. Inputs are passed contiguous, on the value's device, with
``sampling_locations``/``attention_weights`` in the value's accumulation dtype (float32 for float16/bfloat16
values, so that locations keep their precision).

The kernels run as the registered operators ``torch.ops.mask2former_rankseg.ms_deform_attn`` (forward) and
``torch.ops.mask2former_rankseg.ms_deform_attn_backward`` (``torch.library.custom_op``, with fake implementations
and an autograd formula), so ``torch.compile`` traces through :func:`ms_deform_attn` without a graph break (forward
and backward) and ``torch.export`` keeps it as one node. The reference backend is plain PyTorch.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
from types import ModuleType
from typing import Callable, List, Optional, Tuple, Union

import torch

from .reference import ms_deform_attn_reference

logger = logging.getLogger(__name__)

FORCE_REFERENCE_ENV = "MASK2FORMER_RANKSEG_FORCE_REFERENCE"
EXTENSION_MODULE = "mask2former_rankseg._C"
BACKENDS = ("reference", "cpu", "cuda")
KERNEL_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


@functools.cache
def _extension() -> Optional[ModuleType]:
    """The compiled kernels, or None. Tried once; the outcome is logged once."""
    try:
        ext = importlib.import_module(EXTENSION_MODULE)
    except ModuleNotFoundError as e:
        if e.name != EXTENSION_MODULE:  # the extension exists but one of its own imports is missing
            logger.warning("Compiled deformable attention %s failed to import (%s); using the slower PyTorch "
                           "path.", EXTENSION_MODULE, e)
        else:
            logger.warning("Compiled deformable attention %s is not built; using the slower PyTorch path. "
                           "Build it with `pip install --no-build-isolation -e .` (needs a C++ compiler).",
                           EXTENSION_MODULE)
        return None
    except Exception as e:  # built against another torch, missing CUDA runtime, ...
        logger.warning("Compiled deformable attention %s failed to load (%s: %s); using the slower PyTorch path. "
                       "Rebuild it against the installed torch: `pip install --no-build-isolation -e .`.",
                       EXTENSION_MODULE, type(e).__name__, e)
        return None
    logger.debug("Using compiled deformable attention from %s.", getattr(ext, "__file__", EXTENSION_MODULE))
    return ext


def _forced_reference() -> bool:
    return os.environ.get(FORCE_REFERENCE_ENV, "0").strip().lower() not in ("", "0", "false", "no", "off")


def _kernels(kind: str) -> Optional[Tuple[Callable, Callable]]:
    """(forward, backward) of the compiled kernel for device ``kind``, or None."""
    ext = _extension()
    if ext is None:
        return None
    fwd = getattr(ext, f"ms_deform_attn_{kind}_forward", None)
    bwd = getattr(ext, f"ms_deform_attn_{kind}_backward", None)
    if fwd is None or bwd is None:
        return None
    if kind == "cuda":
        _register_cuda()
    return fwd, bwd


def available_backend(device: Optional[Union[torch.device, str]] = None) -> str:
    """The backend :func:`ms_deform_attn` uses by default for tensors on ``device``.

    Args:
        device: a device or its name; default: "cuda" when CUDA is available, else "cpu".
    Returns:
        "cuda", "cpu" (compiled kernels) or "reference" (pure PyTorch).
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    kind = torch.device(device).type
    return kind if _kernel_available(kind) else "reference"


@torch.compiler.assume_constant_result
def _kernel_available(kind: str) -> bool:
    """Whether the compiled kernel for device ``kind`` is there and not disabled by :data:`FORCE_REFERENCE_ENV`.

    torch.compile calls this once while tracing and keeps the answer as a constant (it cannot trace the lazy import
    of the extension): set the environment variable before compiling.
    """
    return kind in ("cpu", "cuda") and not _forced_reference() and _kernels(kind) is not None


OP_NAME = "mask2former_rankseg::ms_deform_attn"
BACKWARD_OP_NAME = "mask2former_rankseg::ms_deform_attn_backward"


def _kernel(kind: str, direction: int) -> Callable:
    """The compiled forward (``direction`` 0) or backward (1) kernel for device ``kind``; a clear error if absent."""
    kernels = _kernels(kind)
    if kernels is None:
        raise RuntimeError(f"{OP_NAME}: the compiled extension {EXTENSION_MODULE} is not built or has no {kind} "
                           "kernel; call mask2former_rankseg.ops.ms_deform_attn, which falls back to PyTorch.")
    return kernels[direction]


def _forward_impl(value: torch.Tensor, spatial_shapes: torch.Tensor, level_start_index: torch.Tensor,
                  sampling_locations: torch.Tensor, attention_weights: torch.Tensor) -> torch.Tensor:
    """Multi-scale deformable attention on the compiled kernel of the inputs' device -> [N, Q, H*D]."""
    return _kernel(value.device.type, 0)(
        value.contiguous(), spatial_shapes.contiguous(), level_start_index.contiguous(),
        sampling_locations.contiguous(), attention_weights.contiguous(),
    )


def _backward_impl(
    value: torch.Tensor, spatial_shapes: torch.Tensor, level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor, attention_weights: torch.Tensor, grad_output: torch.Tensor,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(grad_value, grad_sampling_locations, grad_attention_weights) of the forward operator."""
    grad_value, grad_locations, grad_weights = _kernel(value.device.type, 1)(
        value.contiguous(), spatial_shapes.contiguous(), level_start_index.contiguous(),
        sampling_locations.contiguous(), attention_weights.contiguous(), grad_output.contiguous(),
    )
    return grad_value, grad_locations, grad_weights


# The registered operators. torch.compile and torch.export see one opaque node (shapes from the fake
# implementations below), and autograd calls the registered backward operator, so a backward pass compiles too.
# Inputs as the kernels take them (module docstring). The CPU implementations are registered here; the CUDA ones by
# :func:`_kernels` once the extension is found to hold a CUDA kernel.
ms_deform_attn_op = torch.library.custom_op(OP_NAME, _forward_impl, mutates_args=(), device_types="cpu")
ms_deform_attn_backward_op = torch.library.custom_op(BACKWARD_OP_NAME, _backward_impl, mutates_args=(),
                                                     device_types="cpu")


@ms_deform_attn_op.register_fake
def _ms_deform_attn_fake(value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
    torch._check(value.dim() == 4 and sampling_locations.dim() == 6,
                 lambda: f"{OP_NAME}: value must be [N, S, H, D] and sampling_locations [N, Q, H, L, P, 2].")
    n, _, heads, dim = value.shape
    return value.new_empty((n, sampling_locations.shape[1], heads * dim))


@ms_deform_attn_backward_op.register_fake
def _ms_deform_attn_backward_fake(value, spatial_shapes, level_start_index, sampling_locations, attention_weights,
                                  grad_output):
    return (value.new_empty(value.shape), sampling_locations.new_empty(sampling_locations.shape),
            attention_weights.new_empty(attention_weights.shape))


def _setup_context(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs)


def _backward(ctx, grad_output):
    value, spatial_shapes, level_start_index, sampling_locations, attention_weights = ctx.saved_tensors
    grad_value, grad_locations, grad_weights = ms_deform_attn_backward_op(
        value, spatial_shapes, level_start_index, sampling_locations, attention_weights, grad_output)
    return grad_value, None, None, grad_locations, grad_weights


ms_deform_attn_op.register_autograd(_backward, setup_context=_setup_context)

_CUDA_REGISTERED = False


def _register_cuda() -> None:
    """Add the CUDA implementations to the operators (once; only when a CUDA kernel was built).

    Runs the first time the extension is asked for its CUDA kernel (``backend("cuda")``, ``backend()`` on a GPU
    machine, any :func:`ms_deform_attn` call on CUDA tensors), since the extension is imported lazily. Code that
    calls ``torch.ops.mask2former_rankseg.ms_deform_attn`` on CUDA without those (e.g. a loaded torch.export
    program) calls ``mask2former_rankseg.ops.backend("cuda")`` first.
    """
    global _CUDA_REGISTERED
    if _CUDA_REGISTERED:
        return
    _CUDA_REGISTERED = True
    ms_deform_attn_op.register_kernel("cuda", _forward_impl)
    ms_deform_attn_backward_op.register_kernel("cuda", _backward_impl)


def ms_deform_attn(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
    backend: Optional[str] = None,
) -> torch.Tensor:
    """Multi-scale deformable attention: bilinear samples of every level, weighted and summed per head.

    Args:
        value: [N, S, H, D], the levels flattened row-major and concatenated, S = sum_l H_l * W_l.
        spatial_shapes: [L, 2] long, (H_l, W_l).
        level_start_index: [L] long, offset of each level in S (0, H_0*W_0, ...).
        sampling_locations: [N, Q, H, L, P, 2], (x, y) normalised to [0, 1] (0 = left/top edge of the map,
            1 = right/bottom edge); samples outside read zeros.
        attention_weights: [N, Q, H, L, P].
        backend: "reference", "cpu", "cuda", or None for :func:`available_backend` of ``value.device``.
    Returns:
        [N, Q, H * D].
    """
    _check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    if backend is None:
        chosen = available_backend(value.device)
    elif backend in BACKENDS:
        chosen = backend
    else:
        raise ValueError(f"ms_deform_attn: unknown backend {backend!r}; choose one of {BACKENDS} or None.")
    if chosen == "reference":
        return ms_deform_attn_reference(value, spatial_shapes, sampling_locations, attention_weights)

    if not _kernel_available(chosen):
        why = (f"{FORCE_REFERENCE_ENV} is set" if _forced_reference()
               else f"the compiled extension {EXTENSION_MODULE} is not built or has no {chosen} kernel")
        raise RuntimeError(
            f"ms_deform_attn: backend {chosen!r} is not available ({why}). Use backend='reference' or "
            f"backend=None (best available), or build the extension (pip install -e . with a compiler"
            f"{' and CUDA toolkit' if chosen == 'cuda' else ''})."
        )
    if value.device.type != chosen:
        raise RuntimeError(f"ms_deform_attn: backend {chosen!r} needs tensors on {chosen}, got {value.device}.")
    if value.dtype not in KERNEL_DTYPES:
        raise TypeError(f"ms_deform_attn: the {chosen} kernel takes values of dtype {KERNEL_DTYPES}, got "
                        f"{value.dtype}; use backend='reference'.")
    # Locations and weights in the accumulation dtype: in float16 a location on a 128-wide level would be
    # rounded to 1/16 pixel, in bfloat16 to half a pixel.
    accumulate = torch.float32 if value.dtype in (torch.float16, torch.bfloat16) else value.dtype
    index = dict(device=value.device, dtype=torch.long)
    return ms_deform_attn_op(
        value.contiguous(), spatial_shapes.to(**index).contiguous(), level_start_index.to(**index).contiguous(),
        sampling_locations.to(accumulate).contiguous(), attention_weights.to(accumulate).contiguous(),
    )


def _check_inputs(value: torch.Tensor, spatial_shapes: torch.Tensor, level_start_index: torch.Tensor,
                  sampling_locations: torch.Tensor, attention_weights: torch.Tensor) -> None:
    """Clear errors for inconsistent shapes (the kernels would read out of bounds)."""
    if value.dim() != 4:
        raise ValueError(f"ms_deform_attn: value must be [N, S, H, D], got shape {tuple(value.shape)}.")
    if spatial_shapes.dim() != 2 or spatial_shapes.shape[1] != 2:
        raise ValueError(f"ms_deform_attn: spatial_shapes must be [L, 2], got shape {tuple(spatial_shapes.shape)}.")
    levels = spatial_shapes.shape[0]
    if tuple(level_start_index.shape) != (levels,):
        raise ValueError(
            f"ms_deform_attn: level_start_index must be [L]=[{levels}], got shape {tuple(level_start_index.shape)}."
        )
    if not torch.compiler.is_compiling():  # the values of spatial_shapes are data to torch.compile / export
        _check_levels(value, spatial_shapes, level_start_index)
    n, _, heads, _ = value.shape
    if sampling_locations.dim() != 6 or sampling_locations.shape[-1] != 2:
        raise ValueError(
            "ms_deform_attn: sampling_locations must be [N, Q, H, L, P, 2], got shape "
            f"{tuple(sampling_locations.shape)}."
        )
    loc_n, _, loc_heads, loc_levels = sampling_locations.shape[:4]
    if (loc_n, loc_heads, loc_levels) != (n, heads, levels):
        raise ValueError(
            f"ms_deform_attn: sampling_locations {tuple(sampling_locations.shape)} has (N, H, L)="
            f"{(loc_n, loc_heads, loc_levels)} but value {tuple(value.shape)} and spatial_shapes give "
            f"{(n, heads, levels)}."
        )
    if attention_weights.shape != sampling_locations.shape[:-1]:
        raise ValueError(
            f"ms_deform_attn: attention_weights must be [N, Q, H, L, P]={tuple(sampling_locations.shape[:-1])}, "
            f"got shape {tuple(attention_weights.shape)}."
        )


def _check_levels(value: torch.Tensor, spatial_shapes: torch.Tensor, level_start_index: torch.Tensor) -> None:
    """value's S and level_start_index against the values of spatial_shapes (eager only: reads them)."""
    shapes: List[List[int]] = spatial_shapes.tolist()
    sizes = [int(h) * int(w) for h, w in shapes]
    if value.shape[1] != sum(sizes):
        raise ValueError(
            f"ms_deform_attn: value has S={value.shape[1]} positions but spatial_shapes {shapes} hold "
            f"sum(H_l*W_l)={sum(sizes)}."
        )
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    if level_start_index.tolist() != starts:
        raise ValueError(
            f"ms_deform_attn: level_start_index {level_start_index.tolist()} does not match spatial_shapes "
            f"{shapes} (expected {starts})."
        )


backend = available_backend
"""Public name (ARCHITECTURE.md, "Public API"): ``backend()`` -> "cuda" | "cpu" | "reference"."""

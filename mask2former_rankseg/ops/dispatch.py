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
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
from types import ModuleType
from typing import Callable, List, Optional, Tuple, Union

import torch
from torch.autograd.function import once_differentiable

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
    if kind not in ("cpu", "cuda") or _forced_reference() or _kernels(kind) is None:
        return "reference"
    return kind


class _KernelFunction(torch.autograd.Function):
    """Autograd wrapper around a compiled forward/backward pair."""

    @staticmethod
    def forward(ctx, value, spatial_shapes, level_start_index, sampling_locations, attention_weights,
                kernel_fwd, kernel_bwd):
        ctx.kernel_bwd = kernel_bwd
        ctx.save_for_backward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
        return kernel_fwd(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        value, spatial_shapes, level_start_index, sampling_locations, attention_weights = ctx.saved_tensors
        grad_value, grad_loc, grad_attn = ctx.kernel_bwd(
            value, spatial_shapes, level_start_index, sampling_locations, attention_weights,
            grad_output.contiguous(),
        )
        return grad_value, None, None, grad_loc, grad_attn, None, None


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

    kernels = None if _forced_reference() else _kernels(chosen)
    if kernels is None:
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
    return _KernelFunction.apply(
        value.contiguous(), spatial_shapes.to(**index).contiguous(), level_start_index.to(**index).contiguous(),
        sampling_locations.to(accumulate).contiguous(), attention_weights.to(accumulate).contiguous(), *kernels,
    )


def _check_inputs(value: torch.Tensor, spatial_shapes: torch.Tensor, level_start_index: torch.Tensor,
                  sampling_locations: torch.Tensor, attention_weights: torch.Tensor) -> None:
    """Clear errors for inconsistent shapes (the kernels would read out of bounds)."""
    if value.dim() != 4:
        raise ValueError(f"ms_deform_attn: value must be [N, S, H, D], got shape {tuple(value.shape)}.")
    if spatial_shapes.dim() != 2 or spatial_shapes.shape[1] != 2:
        raise ValueError(f"ms_deform_attn: spatial_shapes must be [L, 2], got shape {tuple(spatial_shapes.shape)}.")
    levels = spatial_shapes.shape[0]
    shapes: List[List[int]] = spatial_shapes.tolist()
    sizes = [int(h) * int(w) for h, w in shapes]
    if value.shape[1] != sum(sizes):
        raise ValueError(
            f"ms_deform_attn: value has S={value.shape[1]} positions but spatial_shapes {shapes} hold "
            f"sum(H_l*W_l)={sum(sizes)}."
        )
    if tuple(level_start_index.shape) != (levels,):
        raise ValueError(
            f"ms_deform_attn: level_start_index must be [L]=[{levels}], got shape {tuple(level_start_index.shape)}."
        )
    starts = [sum(sizes[:i]) for i in range(levels)]
    if level_start_index.tolist() != starts:
        raise ValueError(
            f"ms_deform_attn: level_start_index {level_start_index.tolist()} does not match spatial_shapes "
            f"{shapes} (expected {starts})."
        )
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


backend = available_backend
"""Public name (ARCHITECTURE.md, "Public API"): ``backend()`` -> "cuda" | "cpu" | "reference"."""

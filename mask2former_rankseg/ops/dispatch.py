"""One entry point for multi-scale deformable attention, whatever backend runs it.

Backends: ``"reference"`` (pure PyTorch, always there), and — when the compiled extension
``mask2former_rankseg._C`` is importable — ``"cpu"`` / ``"cuda"`` kernels. Importing this module never
fails: a missing or broken extension is logged once and the reference path is used. Set
``MASK2FORMER_RANKSEG_FORCE_REFERENCE=1`` to force the reference path.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
from types import ModuleType
from typing import Optional

import torch

from .reference import ms_deform_attn_reference

logger = logging.getLogger(__name__)

FORCE_REFERENCE_ENV = "MASK2FORMER_RANKSEG_FORCE_REFERENCE"
BACKENDS = ("reference", "cpu", "cuda")


@functools.cache
def _extension() -> Optional[ModuleType]:
    """The compiled kernels, or None (logged once)."""
    try:
        return importlib.import_module("mask2former_rankseg._C")
    except ImportError as e:  # not built, or built against another torch
        logger.info("Compiled multi-scale deformable attention not available (%s); using the PyTorch path.", e)
        return None


def _forced_reference() -> bool:
    return os.environ.get(FORCE_REFERENCE_ENV, "0") not in ("", "0", "false", "False")


def available_backend(device: Optional[torch.device | str] = None) -> str:
    """The backend that :func:`ms_deform_attn` uses for tensors on ``device`` (default: CUDA if present)."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    kind = torch.device(device).type
    ext = _extension()
    if _forced_reference() or ext is None or not hasattr(ext, f"ms_deform_attn_{kind}_forward"):
        return "reference"
    return kind


def ms_deform_attn(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
    backend: Optional[str] = None,
) -> torch.Tensor:
    """Multi-scale deformable attention.

    Args:
        value: [N, S, H, D], S = sum over levels of H_l * W_l.
        spatial_shapes: [L, 2] long, (H_l, W_l).
        level_start_index: [L] long, offset of each level in S.
        sampling_locations: [N, Q, H, L, P, 2], (x, y) normalised to [0, 1].
        attention_weights: [N, Q, H, L, P].
        backend: "reference", "cpu", "cuda" or None (best available for the tensors' device).
    Returns:
        [N, Q, H * D].
    """
    _check_shapes(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    chosen = backend or available_backend(value.device)
    if chosen not in BACKENDS:
        raise ValueError(f"Unknown ms_deform_attn backend {chosen!r}; choose one of {BACKENDS}.")
    if chosen != "reference":
        if available_backend(value.device) != chosen:
            raise RuntimeError(
                f"ms_deform_attn backend {chosen!r} is not available for tensors on {value.device} (compiled "
                f"extension missing or {FORCE_REFERENCE_ENV} set); use backend='reference' or None."
            )
        raise RuntimeError(f"ms_deform_attn backend {chosen!r} has no kernel registered in this build.")
    return ms_deform_attn_reference(value, spatial_shapes, sampling_locations, attention_weights)


def _check_shapes(value, spatial_shapes, level_start_index, sampling_locations, attention_weights) -> None:
    if value.dim() != 4:
        raise ValueError(f"ms_deform_attn: value must be [N, S, H, D], got {tuple(value.shape)}.")
    if spatial_shapes.dim() != 2 or spatial_shapes.shape[1] != 2:
        raise ValueError(f"ms_deform_attn: spatial_shapes must be [L, 2], got {tuple(spatial_shapes.shape)}.")
    total = int((spatial_shapes[:, 0] * spatial_shapes[:, 1]).sum())
    if value.shape[1] != total:
        raise ValueError(f"ms_deform_attn: value has S={value.shape[1]} but the levels hold {total} positions.")
    if level_start_index.shape != (spatial_shapes.shape[0],):
        raise ValueError("ms_deform_attn: level_start_index must have one entry per level.")
    n, _, h, _ = value.shape
    if sampling_locations.dim() != 6 or sampling_locations.shape[-1] != 2:
        raise ValueError(
            f"ms_deform_attn: sampling_locations must be [N, Q, H, L, P, 2], got {tuple(sampling_locations.shape)}."
        )
    if sampling_locations.shape[0] != n or sampling_locations.shape[2] != h or (
        sampling_locations.shape[3] != spatial_shapes.shape[0]
    ):
        raise ValueError(
            f"ms_deform_attn: sampling_locations {tuple(sampling_locations.shape)} do not match value "
            f"{tuple(value.shape)} and {spatial_shapes.shape[0]} levels."
        )
    if attention_weights.shape != sampling_locations.shape[:-1]:
        raise ValueError(
            f"ms_deform_attn: attention_weights {tuple(attention_weights.shape)} must be "
            f"{tuple(sampling_locations.shape[:-1])}."
        )


backend = available_backend
"""Public name (DESIGN §4b): ``backend()`` -> "cuda" | "cpu" | "reference"."""

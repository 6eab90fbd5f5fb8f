"""Multi-scale deformable attention: one function, several backends (see :mod:`.dispatch`)."""

from .dispatch import FORCE_REFERENCE_ENV, available_backend, backend, ms_deform_attn
from .force import forced_reference
from .modules import MSDeformAttn
from .reference import ms_deform_attn_reference

__all__ = [
    "ms_deform_attn",
    "backend",
    "available_backend",
    "MSDeformAttn",
    "ms_deform_attn_reference",
    "FORCE_REFERENCE_ENV",
    "forced_reference",
]

"""``forced_reference()``: run multi-scale deformable attention on the pure-PyTorch path within a block.

The reference path (``F.grid_sample``) is what graph exporters can express (ONNX ``GridSample``, opset >= 16);
the compiled kernels are opaque to them. The context sets :data:`~.dispatch.FORCE_REFERENCE_ENV` for its
duration (``ms_deform_attn`` reads it on every call) and restores the previous value on exit.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

from .dispatch import FORCE_REFERENCE_ENV


@contextlib.contextmanager
def forced_reference() -> Iterator[None]:
    """Within the block, ``ms_deform_attn(..., backend=None)`` uses the reference path on every device."""
    previous = os.environ.get(FORCE_REFERENCE_ENV)
    os.environ[FORCE_REFERENCE_ENV] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(FORCE_REFERENCE_ENV, None)
        else:
            os.environ[FORCE_REFERENCE_ENV] = previous

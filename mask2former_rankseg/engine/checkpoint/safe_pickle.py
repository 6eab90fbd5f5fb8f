"""Unpickling that runs no code from the file: numpy arrays, dtypes, scalars and plain containers only.

:class:`ArrayOnlyUnpickler` reads detectron2 ``.pkl`` weights and other plain pickles;
:func:`numpy_safe_globals` lists the numpy objects ``torch.load(weights_only=True)`` may rebuild inside ``.pth``
files.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, List

import numpy as np

try:
    from numpy._core import multiarray
except ImportError:  # numpy < 2
    from numpy.core import multiarray

from .errors import CheckpointError

__all__ = ["ArrayOnlyUnpickler", "load_plain_pickle", "numpy_safe_globals"]


class ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickler for detectron2 ``.pkl`` weights: numpy arrays, dtypes, scalars and builtin containers.

    Any other global (a function such as ``os.system``, a class) is refused *before* it is looked up,
    so nothing from the file is ever called except numpy's array reconstruction.
    """

    _ALLOWED = frozenset({
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),  # pickle protocol 5
        ("collections", "OrderedDict"),
        ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "slice"), ("builtins", "complex"),
        ("__builtin__", "set"), ("__builtin__", "frozenset"),
        # protocol-2 pickles written by Python 3 encode ``bytes`` (the array buffers) with this
        ("_codecs", "encode"),
    })

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise CheckpointError(
            f"Refusing to unpickle the global {module}.{name}: weight .pkl files may hold only numpy arrays "
            "and plain containers, and this one could run code when loaded. If you trust its author, "
            "convert it to a state dict of tensors with your own script."
        )


def load_plain_pickle(path: str | Path) -> Any:
    """Read any pickle made only of numpy arrays and plain containers (e.g. a dataset index) with the same
    restricted unpickler as weight files; anything that could run code is refused.

    Raises:
        CheckpointError: naming ``path`` (refused global, or not a readable pickle).
    """
    try:
        with open(path, "rb") as f:
            return ArrayOnlyUnpickler(f, encoding="latin1").load()
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{path} is not a readable pickle ({type(e).__name__}: {e}).") from e


def numpy_safe_globals() -> List[Any]:
    """numpy objects that ``torch.load(weights_only=True)`` may rebuild (arrays inside ``.pth`` files)."""
    allowed: List[Any] = [np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar,
                          # files written with numpy 1.x name the module numpy.core
                          (multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
                          (multiarray.scalar, "numpy.core.multiarray.scalar")]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        allowed += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    return allowed

"""Checkpoints: atomic saving, loading ``.pth`` / official ``.pkl`` / URLs, clear key reports, resume."""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)

LAST_CHECKPOINT_FILE = "last_checkpoint"


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used (unsafe content, unreadable file, or key mismatch with ``strict``)."""


@dataclass
class IncompatibleKeys:
    """Keys that did not load: absent from the file, unused from the file, or of another shape."""

    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    shape_mismatch: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.shape_mismatch)

    def report(self) -> str:
        parts = []
        if self.missing:
            parts.append(f"missing in the checkpoint ({len(self.missing)}):\n  " + "\n  ".join(_group(self.missing)))
        if self.unexpected:
            parts.append(f"unexpected in the checkpoint ({len(self.unexpected)}):\n  "
                         + "\n  ".join(_group(self.unexpected)))
        if self.shape_mismatch:
            parts.append(f"shape mismatch ({len(self.shape_mismatch)}):\n  " + "\n  ".join(
                f"{k}: checkpoint {tuple(a)} vs model {tuple(b)}" for k, a, b in self.shape_mismatch))
        return "\n".join(parts)


def _group(keys: List[str]) -> List[str]:
    """Group ``a.b.weight``, ``a.b.bias`` as ``a.b.{bias, weight}`` for readable reports."""
    groups: Dict[str, List[str]] = defaultdict(list)
    for k in sorted(keys):
        head, _, tail = k.rpartition(".")
        groups[head].append(tail)
    return [f"{h}.{{{', '.join(t)}}}" if h and len(t) > 1 else (f"{h}.{t[0]}" if h else t[0])
            for h, t in groups.items()]


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickler for detectron2 ``.pkl`` weights: numpy arrays, scalars and builtin containers only."""

    _ALLOWED = {
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"), ("collections", "OrderedDict"), ("builtins", "set"),
        ("builtins", "frozenset"), ("builtins", "slice"), ("builtins", "complex"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise CheckpointError(
            f"Refusing to unpickle {module}.{name}: weight .pkl files may hold only numpy arrays and plain "
            "containers. Convert the file with a trusted tool, or load it with torch.load yourself."
        )


def load_pkl(path: str | Path) -> Dict[str, Any]:
    """Read a detectron2-style ``.pkl`` (``{"model": {name: ndarray}, ...}`` or a bare dict of arrays)."""
    with open(path, "rb") as f:
        data = _ArrayOnlyUnpickler(f, encoding="latin1").load()
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a dict of arrays, got {type(data).__name__}.")
    if "model" not in data:
        data = {"model": data, "matching_heuristics": True}
    data["model"] = {k: torch.as_tensor(np.asarray(v)) if not isinstance(v, torch.Tensor) else v
                     for k, v in data["model"].items()}
    return data


def align_by_suffix(model_keys: List[str], ckpt_keys: List[str]) -> Dict[str, str]:
    """Map checkpoint names to model names by the longest dotted-suffix match (detectron2's heuristic),
    e.g. ``res2.0.conv1.weight`` -> ``backbone.res2.0.conv1.weight``. Ambiguous matches are skipped."""
    mapping: Dict[str, str] = {}
    used: Dict[str, str] = {}
    for mk in model_keys:
        best, best_len, ambiguous = None, 0, False
        for ck in ckpt_keys:
            if mk == ck or mk.endswith("." + ck):
                length = len(ck)
                if length > best_len:
                    best, best_len, ambiguous = ck, length, False
                elif length == best_len:
                    ambiguous = True
        if best is None or ambiguous:
            continue
        if best in used:
            logger.warning("Checkpoint key %s matches both %s and %s; using the first.", best, used[best], mk)
            continue
        used[best] = mk
        mapping[best] = mk
    return mapping


class Checkpointer:
    """Saves and loads a model and other ``state_dict`` holders (optimizer, scheduler, scaler, ...).

    Args:
        model: the model (a DDP wrapper is unwrapped).
        save_dir: where ``save()`` writes ``<name>.pth`` and the ``last_checkpoint`` pointer.
        save_to_disk: False on non-main processes.
        checkpointables: other objects with ``state_dict``/``load_state_dict``.
    """

    def __init__(self, model: nn.Module, save_dir: str = "", *, save_to_disk: bool = True, **checkpointables: Any):
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        self.model = model
        self.save_dir = save_dir
        self.save_to_disk = save_to_disk
        self.checkpointables = checkpointables

    # saving --------------------------------------------------------------------------------------
    def save(self, name: str, **extra: Any) -> Optional[Path]:
        """Write ``save_dir/name.pth`` atomically and point ``last_checkpoint`` at it."""
        if not self.save_dir or not self.save_to_disk:
            return None
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(extra)
        path = Path(self.save_dir) / f"{name}.pth"
        logger.info("Saving checkpoint to %s", path)
        _atomic_write(path, lambda f: torch.save(data, f))
        _atomic_write(Path(self.save_dir) / LAST_CHECKPOINT_FILE, lambda f: f.write(path.name.encode()))
        return path

    # loading -------------------------------------------------------------------------------------
    def has_checkpoint(self) -> bool:
        return bool(self.save_dir) and (Path(self.save_dir) / LAST_CHECKPOINT_FILE).is_file()

    def get_checkpoint_file(self) -> str:
        name = (Path(self.save_dir) / LAST_CHECKPOINT_FILE).read_text().strip()
        return str(Path(self.save_dir) / name)

    def resume_or_load(self, path: str, *, resume: bool = True) -> Dict[str, Any]:
        """Resume everything from ``last_checkpoint`` when ``resume`` and it exists; else load the model
        weights only from ``path`` (nothing when empty)."""
        if resume and self.has_checkpoint():
            return self.load(self.get_checkpoint_file())
        return self.load(path, checkpointables=[])

    def load(self, path: str, checkpointables: Optional[List[str]] = None, *, strict: bool = False
             ) -> Dict[str, Any]:
        """Load ``path`` (.pth, .pkl or URL) into the model and the named ``checkpointables`` (default all).

        Returns the remaining extra entries of the file plus ``"incompatible"`` (:class:`IncompatibleKeys`).
        """
        if not path:
            logger.info("No checkpoint given; the model keeps its initialisation.")
            return {}
        local = self._local_path(path)
        data = self._read(local)
        incompatible = self._load_model(data.pop("model"), heuristics=bool(data.pop("matching_heuristics", False)),
                                        source=str(path))
        if strict and incompatible:
            raise CheckpointError(f"Checkpoint {path} does not match the model:\n{incompatible.report()}")
        names = self.checkpointables.keys() if checkpointables is None else checkpointables
        for key in names:
            if key in data:
                logger.info("Loading %s from %s", key, path)
                self.checkpointables[key].load_state_dict(data.pop(key))
        data["incompatible"] = incompatible
        return data

    def _local_path(self, path: str) -> str:
        if "://" in path:
            from iopath.common.file_io import PathManager

            return PathManager().get_local_path(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Checkpoint {path} does not exist.")
        return path

    def _read(self, path: str) -> Dict[str, Any]:
        if path.endswith(".pkl"):
            return load_pkl(path)
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            raise CheckpointError(
                f"{path} holds objects other than tensors and plain containers ({e}); it is refused for safety."
            ) from e
        if isinstance(data, dict) and "model" not in data and all(isinstance(v, torch.Tensor) for v in data.values()):
            data = {"model": data}
        if not isinstance(data, dict) or "model" not in data:
            raise CheckpointError(f"{path}: expected a dict with a 'model' state dict.")
        return data

    def _load_model(self, state: Dict[str, torch.Tensor], heuristics: bool, source: str) -> IncompatibleKeys:
        model_state = self.model.state_dict()
        if heuristics:
            mapping = align_by_suffix(list(model_state), list(state))
            state = {mapping.get(k, k): v for k, v in state.items()}
        result = IncompatibleKeys()
        to_load = {}
        for k, v in state.items():
            if k not in model_state:
                result.unexpected.append(k)
            elif tuple(v.shape) != tuple(model_state[k].shape):
                result.shape_mismatch.append((k, tuple(v.shape), tuple(model_state[k].shape)))
            else:
                to_load[k] = v
        missing, _ = self.model.load_state_dict(to_load, strict=False)
        result.missing = [k for k in missing if not any(k == m[0] for m in result.shape_mismatch)]
        if result:
            logger.warning("Loaded %s with incompatible keys:\n%s", source, result.report())
        else:
            logger.info("Loaded all %d model tensors from %s", len(to_load), source)
        return result


def _atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same directory, then rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


__all__ = ["Checkpointer", "CheckpointError", "IncompatibleKeys", "align_by_suffix", "load_pkl"]

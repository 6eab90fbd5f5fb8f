"""The :class:`Checkpointer`: atomic saving with a ``last_checkpoint`` pointer, resume, and loading weights
into a model (and state into its optimizer, scheduler, ...)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import torch
from torch import nn

from ...utils.file_io import atomic_write
from .errors import CheckpointError
from .formats import load_checkpoint_file
from .key_matching import load_model_state
from .urls import local_checkpoint_path

__all__ = ["CHECKPOINT_OVERHEAD_BYTES", "LAST_CHECKPOINT_FILE", "Checkpointer"]

logger = logging.getLogger(__name__)

LAST_CHECKPOINT_FILE = "last_checkpoint"
CHECKPOINT_OVERHEAD_BYTES = 2**20  # besides the tensors: RNG states, iteration, zip structure (an upper bound)


class Checkpointer:
    """Saves and loads a model and other objects with ``state_dict`` / ``load_state_dict``.

    Args:
        model: the model (a DistributedDataParallel wrapper is unwrapped).
        save_dir: where :meth:`save` writes ``<name>.pth`` and the ``last_checkpoint`` pointer.
        save_to_disk: False on non-main processes (then :meth:`save` does nothing).
        checkpointables: other objects to save and resume (optimizer, scheduler, scaler, ...).
    """

    def __init__(self, model: nn.Module, save_dir: str = "", *, save_to_disk: bool = True, **checkpointables: Any):
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        self.model = model
        self.save_dir = str(save_dir) if save_dir else ""
        self.save_to_disk = save_to_disk
        self.checkpointables: Dict[str, Any] = dict(checkpointables)

    # saving --------------------------------------------------------------------------------------
    def save(self, name: str, **extra: Any) -> Optional[Path]:
        """Write ``save_dir/name.pth`` (model, checkpointables and ``extra``) atomically -- a temporary file
        in the same directory, fsync, rename (:func:`atomic_write`) -- and only then point ``last_checkpoint``
        at it (written the same way), so a crash or kill at any moment leaves the pointer at a complete file.
        Returns the path (None when not saving on this process).

        Raises:
            CheckpointError: the write failed (e.g. the disk is full); the previous checkpoint and the
                pointer are left as they were, and the message says so.
        """
        if not self.save_dir or not self.save_to_disk:
            return None
        data: Dict[str, Any] = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(extra)
        path = Path(self.save_dir) / f"{name}.pth"
        logger.info("Saving checkpoint to %s", path)
        previous = self._pointed_checkpoint()
        try:
            atomic_write(path, lambda f: torch.save(data, f))
            atomic_write(Path(self.save_dir) / LAST_CHECKPOINT_FILE, lambda f: f.write(path.name.encode()))
        except (OSError, RuntimeError) as e:  # torch.save reports a failed write (e.g. ENOSPC) as RuntimeError
            reason = _os_error_in_chain(e) or e
            kept = (f"{LAST_CHECKPOINT_FILE} still points at the previous checkpoint {previous}, which is intact"
                    if previous else "no earlier checkpoint exists")
            raise CheckpointError(
                f"Could not write checkpoint {path}: {type(reason).__name__}: {reason}. Nothing was replaced: "
                f"{kept}. Free space on (or fix) the disk of {self.save_dir}, then continue with --resume."
            ) from e
        return path

    def estimated_size_bytes(self) -> int:
        """About how many bytes :meth:`save` writes: the tensors of the model and of every checkpointable, plus
        1 MiB for the rest (RNG states, file structure). An optimizer that has not stepped yet (empty state) is
        counted as Adam's two moments per parameter."""
        total = CHECKPOINT_OVERHEAD_BYTES + _tensor_bytes(self.model.state_dict())
        for obj in self.checkpointables.values():
            if isinstance(obj, torch.optim.Optimizer) and not obj.state:
                total += 2 * sum(p.numel() * p.element_size() for g in obj.param_groups for p in g["params"])
            elif hasattr(obj, "state_dict"):
                total += _tensor_bytes(obj.state_dict())
        return total

    def _pointed_checkpoint(self) -> Optional[str]:
        """Name of the file ``last_checkpoint`` points at (None without a readable pointer)."""
        try:
            return (Path(self.save_dir) / LAST_CHECKPOINT_FILE).read_text().strip() or None
        except OSError:
            return None

    # finding -------------------------------------------------------------------------------------
    def has_checkpoint(self) -> bool:
        """Whether ``save_dir`` has a ``last_checkpoint`` pointer."""
        return bool(self.save_dir) and (Path(self.save_dir) / LAST_CHECKPOINT_FILE).is_file()

    def get_checkpoint_file(self) -> str:
        """The file ``last_checkpoint`` points at."""
        pointer = Path(self.save_dir) / LAST_CHECKPOINT_FILE
        name = pointer.read_text().strip()
        path = Path(self.save_dir) / name
        if not path.is_file():
            raise CheckpointError(f"{pointer} points at {name!r}, which does not exist in {self.save_dir}. "
                                  "Fix or delete the pointer file, or train without --resume.")
        return str(path)

    def get_all_checkpoint_files(self) -> List[str]:
        """All ``.pth`` files in ``save_dir``, sorted."""
        return sorted(str(p) for p in Path(self.save_dir).glob("*.pth")) if self.save_dir else []

    # loading -------------------------------------------------------------------------------------
    def resume_or_load(self, path: str, resume: bool = True) -> Dict[str, Any]:
        """With ``resume`` and a ``last_checkpoint`` in ``save_dir``: load it with every checkpointable.
        Otherwise load only the model weights from ``path`` (nothing when ``path`` is empty)."""
        if resume and self.has_checkpoint():
            return self.load(self.get_checkpoint_file())
        return self.load(path, checkpointables=[])

    def load(self, path: str, checkpointables: Optional[List[str]] = None, *, strict: bool = False
             ) -> Dict[str, Any]:
        """Load ``path`` (``.pth``, ``.pkl``, ``.safetensors``, jax ViT ``.npz``, ``http(s)://`` or ``detectron2://``
        URL) into the model, and the named ``checkpointables`` (default: all that the file has). A pretrained
        backbone file in the backbone's own names (e.g. a timm state dict) loads under ``backbone.``.

        Returns:
            the file's other entries (e.g. ``iteration``) plus ``"incompatible"``: :class:`IncompatibleKeys`.
            Empty ``path``: ``{}`` and nothing is loaded.
        Raises:
            FileNotFoundError: no such file. CheckpointError: unsafe or unreadable file; with ``strict``,
            any missing, unexpected or mis-shaped key (all listed).
        """
        if not path:
            logger.info("No checkpoint given; the model keeps its initialisation.")
            return {}
        local, heuristics_from_url = local_checkpoint_path(str(path))
        data = load_checkpoint_file(local)
        heuristics = bool(data.pop("matching_heuristics", False)) or heuristics_from_url
        incompatible = load_model_state(self.model, data.pop("model"), heuristics=heuristics, source=str(path),
                                        strict=strict)
        names = list(self.checkpointables) if checkpointables is None else list(checkpointables)
        for key in names:
            if key not in self.checkpointables:
                raise KeyError(f"Unknown checkpointable {key!r}; this Checkpointer has {sorted(self.checkpointables)}.")
            if key not in data:
                continue
            state = data.pop(key)
            if isinstance(state, dict) and not state:
                logger.debug("%s has an empty %s state; %s keeps its current state.", path, key, key)
                continue
            try:
                self.checkpointables[key].load_state_dict(state)
            except (ValueError, KeyError, RuntimeError) as e:
                raise CheckpointError(
                    f"Cannot restore {key} from {path}: {e}. The checkpoint was probably written for a different "
                    "model or solver configuration; use MODEL.WEIGHTS (weights only) instead of --resume."
                ) from e
            logger.info("Restored %s from %s", key, path)
        data["incompatible"] = incompatible
        return data


def _os_error_in_chain(error: BaseException) -> Optional[OSError]:
    """The first OSError among ``error`` and its causes/contexts (torch.save wraps a failed write)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _tensor_bytes(obj: Any) -> int:
    """Total bytes of the tensors in a nest of dicts, lists and tuples."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, Mapping):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0

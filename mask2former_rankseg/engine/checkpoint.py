"""Checkpoints: atomic saving; loading ``.pth``, detectron2 / official ``.pkl`` files and URLs safely;
clear reports of missing, unexpected and mis-shaped keys; resume.

Nothing here runs code from a file: ``.pth`` files are read with ``torch.load(weights_only=True)`` (numpy
arrays allowed), ``.pkl`` files with an unpickler that knows only numpy arrays and plain containers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple
from urllib.parse import parse_qs, urlparse

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)

__all__ = [
    "Checkpointer",
    "CheckpointError",
    "IncompatibleKeys",
    "align_by_suffix",
    "atomic_write",
    "load_checkpoint_file",
    "load_pkl",
    "load_plain_pickle",
]

LAST_CHECKPOINT_FILE = "last_checkpoint"
D2_URL_PREFIX = "detectron2://"
D2_URL_BASE = "https://dl.fbaipublicfiles.com/detectron2/"
# Model buffers that are set from the config and may be absent from old checkpoints (as detectron2).
_CONFIG_BUFFERS = ("pixel_mean", "pixel_std")


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used: unsafe content, unreadable file, unknown format, or keys that do not
    match the model with ``strict=True``."""


# --------------------------------------------------------------------------------------------------
# key reports
# --------------------------------------------------------------------------------------------------
@dataclass
class IncompatibleKeys:
    """What did not load into the model.

    Attributes:
        missing: model keys with no value in the checkpoint (they keep their initialisation).
        unexpected: checkpoint keys the model has no use for (checkpoint names).
        shape_mismatch: ``(model key, checkpoint shape, model shape)`` of skipped tensors.
    """

    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    shape_mismatch: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.shape_mismatch)

    def report(self) -> str:
        """A table, one row per key group (``a.b.{bias, weight}``): status, keys, checkpoint and model shapes."""
        rows = [("missing", k, "", "") for k in _group_keys(self.missing)]
        rows += [("unexpected", k, "", "") for k in _group_keys(self.unexpected)]
        rows += [("shape mismatch", k, str(tuple(a)), str(tuple(b))) for k, a, b in self.shape_mismatch]
        if not rows:
            return ""
        header = ("status", "keys", "checkpoint shape", "model shape")
        widths = [max(len(r[i]) for r in rows + [header]) for i in range(4)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header] + rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        summary = (f"{len(self.missing)} missing (kept as initialised), {len(self.unexpected)} unexpected (ignored), "
                   f"{len(self.shape_mismatch)} shape mismatches (skipped)")
        return summary + ":\n" + "\n".join(lines)


def _group_keys(keys: Iterable[str]) -> List[str]:
    """``a.b.weight``, ``a.b.bias`` -> ``a.b.{bias, weight}``."""
    groups: Dict[str, List[str]] = defaultdict(list)
    for k in sorted(keys):
        head, _, tail = k.rpartition(".")
        groups[head].append(tail)
    out = []
    for head, tails in groups.items():
        if not head:
            out.extend(tails)
        elif len(tails) == 1:
            out.append(f"{head}.{tails[0]}")
        else:
            out.append(f"{head}.{{{', '.join(tails)}}}")
    return out


# --------------------------------------------------------------------------------------------------
# reading files
# --------------------------------------------------------------------------------------------------
class _ArrayOnlyUnpickler(pickle.Unpickler):
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
            return _ArrayOnlyUnpickler(f, encoding="latin1").load()
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{path} is not a readable pickle ({type(e).__name__}: {e}).") from e


def load_pkl(path: str | Path) -> Dict[str, Any]:
    """Read a detectron2-style ``.pkl`` into ``{"model": {name: Tensor}, ...}``.

    * model-zoo format ``{"model": {...}, "__author__": ..., ["matching_heuristics": bool]}``: as is;
    * a bare dict of arrays with dotted (PyTorch) names: ``{"model": it, "matching_heuristics": True}``;
    * Caffe2 / Detectron1 files (``blobs``, names like ``res2_0_branch2a_w``): refused with an explanation.
    """
    try:
        with open(path, "rb") as f:
            data = _ArrayOnlyUnpickler(f, encoding="latin1").load()
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path} is not a readable .pkl weight file ({type(e).__name__}: {e}).") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a dict of arrays, got {type(data).__name__}.")
    if "model" in data and isinstance(data["model"], dict):
        data = dict(data)
        if "__author__" in data:
            logger.info("Reading %s, written by %s", path, data["__author__"])
    else:
        weights = data.get("blobs", data)
        if "blobs" in data or _looks_like_caffe2(weights):
            raise CheckpointError(
                f"{path} is a Caffe2/Detectron1 weight file (names like 'res2_0_branch2a_w'); its names are not "
                "converted here. Use a torchvision-converted file instead (detectron2's "
                "tools/convert-torchvision-to-d2.py), as Mask2Former's configs do."
            )
        data = {"model": weights, "matching_heuristics": True}
    data["model"] = _to_tensors(data["model"], str(path))
    return data


def _looks_like_caffe2(weights: Mapping[str, Any]) -> bool:
    names = [k for k in weights if isinstance(k, str)]
    return bool(names) and all("." not in k for k in names) and any(k.endswith(("_w", "_b")) for k in names)


def _to_tensors(state: Mapping[str, Any], source: str) -> Dict[str, torch.Tensor]:
    out = {}
    for k, v in state.items():
        if isinstance(v, torch.Tensor):
            out[k] = v
        elif isinstance(v, (np.ndarray, np.generic, int, float)):
            out[k] = torch.from_numpy(np.array(v))  # a writable copy (pickled arrays may be read-only)
        else:
            raise CheckpointError(f"{source}: entry {k!r} of the model weights is a {type(v).__name__}, not an array.")
    return out


def _numpy_safe_globals() -> List[Any]:
    """numpy objects that ``torch.load(weights_only=True)`` may rebuild (arrays inside ``.pth`` files)."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray

    allowed: List[Any] = [np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar,
                          # files written with numpy 1.x name the module numpy.core
                          (multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
                          (multiarray.scalar, "numpy.core.multiarray.scalar")]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        allowed += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    return allowed


def load_checkpoint_file(path: str) -> Dict[str, Any]:
    """Read a local ``.pth`` / ``.pkl`` file into a dict with a ``"model"`` state dict of tensors.

    ``.pth`` files are read with ``weights_only=True``: tensors, numbers, strings, plain containers and
    numpy arrays only. Our own checkpoints are made of exactly these (the RNG states are stored as tensors
    and tuples, see :func:`mask2former_rankseg.engine.defaults.capture_rng_state`), so resuming never
    needs to trust a pickle; a file that holds anything else is refused, naming what it holds.
    """
    if path.endswith(".pkl"):
        return load_pkl(path)
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # noqa: BLE001 - only used to improve the message
            unsafe = []
        what = ", ".join(unsafe) if unsafe else str(e).splitlines()[0]
        raise CheckpointError(
            f"{path} holds objects other than tensors, arrays and plain containers ({what}); it is refused "
            "because loading it could run code. If you trust its author, re-save its state dict with "
            "torch.save({'model': state_dict}, path)."
        ) from None
    except (RuntimeError, EOFError, OSError) as e:
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(e).__name__}: {e}).") from e
    if isinstance(data, dict) and "model" not in data:
        if "state_dict" in data and isinstance(data["state_dict"], dict):
            data = {**data, "model": data.pop("state_dict")}
        elif all(isinstance(v, (torch.Tensor, np.ndarray)) for v in data.values()):
            data = {"model": data}
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise CheckpointError(f"{path}: expected a state dict, or a dict with a 'model' state dict.")
    data["model"] = _to_tensors(data["model"], path)
    return data


# --------------------------------------------------------------------------------------------------
# name matching
# --------------------------------------------------------------------------------------------------
def align_by_suffix(model_shapes: Mapping[str, Tuple[int, ...]], ckpt_shapes: Mapping[str, Tuple[int, ...]]
                    ) -> Tuple[Dict[str, str], List[Tuple[str, str]]]:
    """Match checkpoint names to model names by the longest dotted suffix (detectron2's heuristic for
    ImageNet weights): ``res2.0.conv1.weight`` -> ``backbone.res2.0.conv1.weight``.

    For each model key the longest checkpoint key equal to it or ending it after a ``.`` is its candidate.
    A checkpoint key that is the candidate of several model keys goes to the one of equal shape (a short
    key such as ``norm.weight`` can end many names); two of equal shape are an ambiguity and an error.

    Returns:
        ``{checkpoint key: model key}`` of equal-shape matches, and ``[(checkpoint key, model key)]`` of
        unique matches whose shapes differ.
    """
    by_len = sorted(ckpt_shapes, key=len, reverse=True)
    candidates: Dict[str, List[str]] = defaultdict(list)
    for mk in model_shapes:
        for ck in by_len:  # longest first: the first hit is the best
            if mk == ck or mk.endswith("." + ck):
                candidates[ck].append(mk)
                break
    mapping: Dict[str, str] = {}
    mismatched: List[Tuple[str, str]] = []
    for ck, mks in candidates.items():
        same = [mk for mk in mks if tuple(model_shapes[mk]) == tuple(ckpt_shapes[ck])]
        if len(same) > 1:
            raise CheckpointError(
                f"Checkpoint key {ck!r} matches several model keys of the same shape ({', '.join(sorted(same))}); "
                "rename the checkpoint keys so that each matches one model key."
            )
        if same:
            mapping[ck] = same[0]
        elif len(mks) == 1:
            mismatched.append((ck, mks[0]))
    return mapping, mismatched


# --------------------------------------------------------------------------------------------------
# Checkpointer
# --------------------------------------------------------------------------------------------------
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
        in the same directory, then a rename -- and point ``last_checkpoint`` at it. Returns the path
        (None when not saving on this process)."""
        if not self.save_dir or not self.save_to_disk:
            return None
        data: Dict[str, Any] = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(extra)
        path = Path(self.save_dir) / f"{name}.pth"
        logger.info("Saving checkpoint to %s", path)
        atomic_write(path, lambda f: torch.save(data, f))
        atomic_write(Path(self.save_dir) / LAST_CHECKPOINT_FILE, lambda f: f.write(path.name.encode()))
        return path

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
        """Load ``path`` (``.pth``, ``.pkl``, ``http(s)://`` or ``detectron2://`` URL) into the model, and the
        named ``checkpointables`` (default: all that the file has).

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
        local, heuristics_from_url = self._local_path(str(path))
        data = load_checkpoint_file(local)
        heuristics = bool(data.pop("matching_heuristics", False)) or heuristics_from_url
        incompatible = self._load_model(data.pop("model"), heuristics=heuristics, source=str(path), strict=strict)
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

    def _local_path(self, path: str) -> Tuple[str, bool]:
        """(local file, matching heuristics requested by a ``?matching_heuristics=True`` URL query)."""
        heuristics = False
        if path.startswith(D2_URL_PREFIX):
            path = D2_URL_BASE + path[len(D2_URL_PREFIX):]
        if "://" in path:
            parsed = urlparse(path)
            query = parse_qs(parsed.query)
            heuristics = query.pop("matching_heuristics", ["False"]) == ["True"]
            if query:
                raise ValueError(f"Unsupported query {parsed.query!r} in checkpoint URL {path}.")
            url = parsed._replace(query="").geturl()
            try:
                return _path_manager().get_local_path(url), heuristics
            except OSError as e:  # URLError is an OSError: no network, 404, ...
                raise CheckpointError(
                    f"Cannot download checkpoint {url}: {e}. Download it yourself and set MODEL.WEIGHTS to the "
                    "local file (or MODEL.WEIGHTS '' to start from scratch)."
                ) from e
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Checkpoint {path} does not exist (check MODEL.WEIGHTS or the path given).")
        return path, heuristics

    def _load_model(self, state: Dict[str, torch.Tensor], *, heuristics: bool, source: str, strict: bool
                    ) -> IncompatibleKeys:
        state = _strip_prefix(state, "module.")
        model_state = self.model.state_dict()
        result = IncompatibleKeys()
        if heuristics:
            mapping, mismatched = align_by_suffix({k: tuple(v.shape) for k, v in model_state.items()},
                                                  {k: tuple(v.shape) for k, v in state.items()})
            for ck, mk in mismatched:
                result.shape_mismatch.append((mk, tuple(state[ck].shape), tuple(model_state[mk].shape)))
            skipped = {ck for ck, _ in mismatched}
            renamed = {}
            for ck, value in state.items():
                if ck in mapping:
                    renamed[mapping[ck]] = value
                elif ck not in skipped:
                    result.unexpected.append(ck)
            _log_heuristic_matches(mapping, len(state), source)
            state = renamed
        to_load = {}
        for k, v in state.items():
            if k not in model_state:
                result.unexpected.append(k)
            elif tuple(v.shape) != tuple(model_state[k].shape):
                result.shape_mismatch.append((k, tuple(v.shape), tuple(model_state[k].shape)))
            else:
                to_load[k] = v
        missing, _ = self.model.load_state_dict(to_load, strict=False)
        mismatched_keys = {k for k, _, _ in result.shape_mismatch}
        top_buffers = dict(self.model.named_buffers(recurse=False))
        result.missing = [
            k for k in missing
            if k not in mismatched_keys and not k.endswith("num_batches_tracked")
            and not (k in _CONFIG_BUFFERS and k in top_buffers)
        ]
        if strict and result:
            raise CheckpointError(f"Checkpoint {source} does not match the model:\n{result.report()}")
        if result:
            logger.warning("Loaded %d of %d model tensors from %s.\n%s", len(to_load), len(model_state), source,
                           result.report())
        else:
            logger.info("Loaded all %d model tensors from %s", len(to_load), source)
        return result


def _log_heuristic_matches(mapping: Mapping[str, str], num_checkpoint_keys: int, source: str) -> None:
    """Say what suffix matching did: how many keys, under which added prefixes (``backbone.``: 318 keys)."""
    prefixes: Dict[str, int] = defaultdict(int)
    for ck, mk in mapping.items():
        prefixes[mk[: len(mk) - len(ck)]] += 1
    summary = ", ".join(f"{p or '(none)'!r}: {n}" for p, n in sorted(prefixes.items(), key=lambda kv: -kv[1]))
    logger.info("Matched %d of %d keys of %s to the model by name suffix (detectron2's heuristic for backbone "
                "checkpoints); prefixes added: %s.", len(mapping), num_checkpoint_keys, source, summary or "none")
    for ck, mk in sorted(mapping.items(), key=lambda kv: kv[1]):
        if ck != mk:
            logger.debug("  %s -> %s", ck, mk)


def _strip_prefix(state: Dict[str, torch.Tensor], prefix: str) -> Dict[str, torch.Tensor]:
    """Remove ``prefix`` when every key has it (state dicts saved from a DDP wrapper)."""
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return state


_PATH_MANAGER = None


def _path_manager():
    """An iopath PathManager that downloads http(s) URLs into its cache (``$FVCORE_CACHE`` or
    ``~/.torch/iopath_cache``)."""
    global _PATH_MANAGER
    if _PATH_MANAGER is None:
        from iopath.common.file_io import HTTPURLHandler, PathManager

        _PATH_MANAGER = PathManager()
        _PATH_MANAGER.register_handler(HTTPURLHandler())
    return _PATH_MANAGER


def atomic_write(path: str | Path, write: Callable[[Any], Any]) -> None:
    """Call ``write(f)`` on a temporary binary file in ``path``'s directory, then rename it to ``path``.

    Readers see the old file or the complete new one, never a half-written file; on any error (or an
    interrupt) the temporary file is removed and the old file is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; checkpoints are meant to be shared like other outputs
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise

"""Matching a checkpoint's keys to a model's and loading the tensors that fit, with a report of the missing,
unexpected and mis-shaped keys (:class:`IncompatibleKeys`)."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Tuple

import torch
from torch import nn

from .backbone_files import route_backbone_weights
from .errors import CheckpointError

__all__ = ["IncompatibleKeys", "align_by_suffix", "load_model_state"]

logger = logging.getLogger(__name__)

# Model buffers that are set from the config and may be absent from old checkpoints (as detectron2).
_CONFIG_BUFFERS = ("pixel_mean", "pixel_std")


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


def load_model_state(model: nn.Module, state: Dict[str, torch.Tensor], *, heuristics: bool, source: str,
                     strict: bool) -> IncompatibleKeys:
    """Load the tensors of ``state`` whose names and shapes fit ``model``; log (or, with ``strict``, raise) the rest.

    Args:
        model: the model to load into (not a DistributedDataParallel wrapper).
        state: checkpoint state dict; a ``module.`` prefix on every key (a DDP wrapper's) is removed, and a
            pretrained backbone file's keys get ``backbone.`` (:func:`route_backbone_weights`).
        heuristics: match names by suffix first (:func:`align_by_suffix`), for backbone checkpoints.
        source: names the checkpoint in messages.
        strict: any missing, unexpected or mis-shaped key is an error.
    Raises:
        CheckpointError: with ``strict``, listing every key that did not fit.
    """
    state = route_backbone_weights(model, _strip_prefix(state, "module."), heuristics=heuristics, source=source)
    model_state = model.state_dict()
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
    missing, _ = model.load_state_dict(to_load, strict=False)
    mismatched_keys = {k for k, _, _ in result.shape_mismatch}
    top_buffers = dict(model.named_buffers(recurse=False))
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

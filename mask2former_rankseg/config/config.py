"""``CfgNode``: fvcore's config node with safe YAML loading, ``_BASE_`` chains and clear errors."""

from __future__ import annotations

import ast
import copy
import difflib
import logging
from pathlib import Path
from typing import Any, Dict, List

import yaml
from fvcore.common.config import CfgNode as _FvcoreCfgNode

from .safe_eval import UnsafeExpressionError, safe_eval
from .shipped import resolve_config_file

logger = logging.getLogger(__name__)

BASE_KEY = "_BASE_"
DEPRECATED_ALIASES = {"MODEL.MLSEG": "MODEL.RANKSEG"}
"""Old key prefixes read as their new names, with one warning per source: RankSeg was called MLSeg, and
upstream's own VSPW Swin-B ``-gt`` config still writes ``MODEL.MLSEG.USE_GT``."""
EVAL_TAG = "tag:yaml.org,2002:python/object/apply:eval"


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the file and the key."""


class _ConfigLoader(yaml.SafeLoader):
    """SafeLoader that also understands upstream's ``!!python/object/apply:eval [expr]`` tag."""


def _construct_eval(loader: _ConfigLoader, node: yaml.Node) -> Any:
    args = loader.construct_sequence(node, deep=True)
    if len(args) != 1:
        raise UnsafeExpressionError(f"!!python/object/apply:eval takes one expression string, got {args!r}.")
    return safe_eval(args[0])


_ConfigLoader.add_constructor(EVAL_TAG, _construct_eval)


def load_yaml_with_base(filename: str | Path) -> Dict[str, Any]:
    """Read a YAML config as a dict, merging the files of its ``_BASE_`` chain under it.

    ``_BASE_`` paths are relative to the file that names them (or absolute / ``~``-prefixed).
    """
    path = resolve_config_file(filename)
    if not path.is_file():
        raise ConfigError(f"Config file {path} does not exist (nor is it the name of a config shipped with the "
                          "package, e.g. 'ade20k/semantic-segmentation/maskformer2_R50_bs16_160k-rankseg.yaml').")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.load(f, Loader=_ConfigLoader)  # noqa: S506 - a SafeLoader subclass
    except UnsafeExpressionError as e:
        raise ConfigError(f"{path}: {e}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"Cannot parse config file {path}: {e}") from e
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path} must hold a mapping at the top level.")
    base = data.pop(BASE_KEY, None)
    if base is None:
        return data
    base_path = Path(base).expanduser()
    if not base_path.is_absolute():
        base_path = path.parent / base_path
    merged = load_yaml_with_base(base_path)
    _merge_dicts(data, merged)
    return merged


def _merge_dicts(src: Dict[str, Any], dst: Dict[str, Any]) -> None:
    """Recursively merge ``src`` into ``dst`` (``src`` wins)."""
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge_dicts(v, dst[k])
        else:
            dst[k] = v


class CfgNode(_FvcoreCfgNode):
    """fvcore ``CfgNode`` whose merges never execute code and name the offending key and file."""

    def merge_from_file(self, cfg_filename: str | Path, allow_unsafe: bool = False) -> None:
        """Merge a YAML file (and its ``_BASE_`` chain) into this config.

        ``allow_unsafe`` is accepted for detectron2 compatibility and ignored: the eval tag is always
        handled by the restricted evaluator.
        """
        data = load_yaml_with_base(cfg_filename)
        aliased: set = set()
        self._merge_dict(data, source=str(cfg_filename), aliased=aliased)
        _warn_aliases(aliased, str(cfg_filename))

    def merge_from_other_cfg(self, cfg_other: _FvcoreCfgNode) -> None:
        aliased: set = set()
        self._merge_dict(cfg_other, source="another config", aliased=aliased)
        _warn_aliases(aliased, "another config")

    def merge_from_list(self, cfg_list: List[Any]) -> None:
        """Merge ``["KEY.PATH", value, ...]`` overrides (command-line style)."""
        if len(cfg_list) % 2 != 0:
            raise ConfigError(f"Overrides must be KEY VALUE pairs; got an odd number of items: {cfg_list}.")
        source = "the command-line overrides"
        aliased: set = set()
        for full_key, value in zip(cfg_list[0::2], cfg_list[1::2]):
            full_key = _resolve_alias(str(full_key), aliased)
            node = self
            parts = full_key.split(".")
            for part in parts[:-1]:
                if not isinstance(node, _FvcoreCfgNode) or part not in node:
                    raise ConfigError(f"Unknown config key {full_key!r} (from {source}).{self._suggest(full_key)}")
                node = node[part]
            if not isinstance(node, _FvcoreCfgNode) or parts[-1] not in node:
                raise ConfigError(f"Unknown config key {full_key!r} (from {source}).{self._suggest(full_key)}")
            node._set_checked(parts[-1], value, full_key, source)
        _warn_aliases(aliased, source)

    def _suggest(self, full_key: str, prefix: str = "") -> str:
        """" Did you mean ...?" with the closest valid keys below this node (``prefix`` + their path), or ""."""
        close = difflib.get_close_matches(full_key, [f"{prefix}{k}" for k in _full_keys(self)], n=3, cutoff=0.75)
        return f" Did you mean {' or '.join(repr(k) for k in close)}?" if close else ""

    def _merge_dict(self, data: Dict[str, Any], source: str, aliased: set, prefix: str = "") -> None:
        if self.is_frozen():
            raise ConfigError(f"Cannot merge {source}: the config is frozen.")
        for key, value in data.items():
            full_key = _resolve_alias(f"{prefix}{key}", aliased)
            key = full_key.rsplit(".", 1)[-1]
            if key not in self:
                hint = self._suggest(full_key, prefix) or (
                    " Check its spelling against mask2former_rankseg.config.get_cfg().")
                raise ConfigError(f"Unknown config key {full_key!r} in {source}.{hint}")
            current = self[key]
            if isinstance(current, _FvcoreCfgNode):
                if not isinstance(value, dict):
                    raise ConfigError(f"Config key {full_key!r} in {source} must be a mapping, got {value!r}.")
                current._merge_dict(value, source, aliased, prefix=f"{full_key}.")
            else:
                self._set_checked(key, value, full_key, source)

    def _set_checked(self, key: str, value: Any, full_key: str, source: str) -> None:
        original = self[key]
        value = _decode(value)
        coerced = _coerce(value, original)
        if coerced is _MISMATCH:
            raise ConfigError(
                f"Config key {full_key!r} in {source}: value {value!r} of type {type(value).__name__} does not "
                f"match the default {original!r} of type {type(original).__name__}."
            )
        dict.__setitem__(self, key, coerced)

    def dump(self, **kwargs: Any) -> str:
        """YAML text that ``merge_from_file`` reads back to an equal config."""
        return dump_config(self)

    def clone(self) -> CfgNode:
        return copy.deepcopy(self)


_MISMATCH = object()


def _resolve_alias(full_key: str, aliased: set) -> str:
    """``full_key`` with a deprecated prefix (:data:`DEPRECATED_ALIASES`) replaced by its new name; the old prefix
    is added to ``aliased`` (for one warning per source, :func:`_warn_aliases`)."""
    for old, new in DEPRECATED_ALIASES.items():
        if full_key == old or full_key.startswith(old + "."):
            aliased.add(old)
            return new + full_key[len(old):]
    return full_key


def _warn_aliases(aliased: set, source: str) -> None:
    for old in sorted(aliased):
        logger.warning("%s uses the deprecated key prefix %s (RankSeg's old name MLSeg): read as %s.", source, old,
                       DEPRECATED_ALIASES[old])


def _full_keys(node: _FvcoreCfgNode, prefix: str = "") -> List[str]:
    """Every leaf key below ``node`` as a dotted path relative to it."""
    keys = []
    for key, value in node.items():
        if isinstance(value, _FvcoreCfgNode):
            keys.extend(_full_keys(value, f"{prefix}{key}."))
        else:
            keys.append(f"{prefix}{key}")
    return keys


def _decode(value: Any) -> Any:
    """As yacs: strings that are Python literals ("(512, 512)", "True", "0.1") become those values."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return value


def _coerce(value: Any, original: Any) -> Any:
    """Return ``value`` converted to the default's type, or ``_MISMATCH``."""
    if original is None or value is None:
        return value
    if isinstance(original, bool) or isinstance(value, bool):
        return value if isinstance(value, bool) and isinstance(original, bool) else _MISMATCH
    if type(value) is type(original):
        return value
    if isinstance(original, (list, tuple)) and isinstance(value, (list, tuple)):
        inner = type(original[0]) if original and isinstance(original[0], (list, tuple)) else None
        if inner is not None:
            value = [inner(v) if isinstance(v, (list, tuple)) else v for v in value]
        return type(original)(value)
    if isinstance(original, float) and isinstance(value, int):
        return float(value)
    if isinstance(original, int) and isinstance(value, float):
        # upstream declares some float-valued keys with an int default (e.g. RANKSEG.LOSS_WEIGHT = 0)
        return value
    if isinstance(original, str) and isinstance(value, str):
        return value
    return _MISMATCH


def dump_config(cfg: CfgNode) -> str:
    """YAML text of ``cfg`` that ``merge_from_file`` reads back to an equal config."""
    return yaml.safe_dump(_to_plain(cfg), default_flow_style=None, sort_keys=True)


def _to_plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _to_plain(v) for k, v in node.items()}
    if isinstance(node, tuple):
        return [_to_plain(v) for v in node]
    if isinstance(node, list):
        return [_to_plain(v) for v in node]
    return node

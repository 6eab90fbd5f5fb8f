"""The config files that ship with the package, found by name as well as by path.

A wheel carries the repository's ``configs/`` tree as ``mask2former_rankseg/configs/`` (``setup.py`` copies it at
build time); a source checkout (or an editable install) reads the repository's ``configs/`` itself. A name is the
file's path below that tree, e.g. ``ade20k/semantic-segmentation/maskformer2_R50_bs16_160k-rankseg.yaml``
(the ``configs/`` prefix and the ``.yaml`` suffix may be given or left out).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

__all__ = ["config_roots", "find_shipped_config", "list_shipped_configs", "resolve_config_file"]

_PACKAGE = Path(__file__).resolve().parents[1]


def config_roots() -> List[Path]:
    """The folders that hold shipped configs, first the wheel's, then a source checkout's (those that exist)."""
    return [root for root in (_PACKAGE / "configs", _PACKAGE.parent / "configs") if root.is_dir()]


def _candidates(name: str) -> List[str]:
    name = name.strip().lstrip("/")
    if name.startswith("configs/"):
        name = name[len("configs/"):]
    return [name] if name.endswith((".yaml", ".yml")) else [name, f"{name}.yaml"]


def find_shipped_config(name: str) -> Optional[Path]:
    """The shipped config named ``name``, or None."""
    for root in config_roots():
        for candidate in _candidates(name):
            path = root / candidate
            if path.is_file():
                return path
    return None


def list_shipped_configs() -> List[str]:
    """Names of every shipped config (paths below the configs tree), sorted."""
    names = set()
    for root in config_roots():
        names.update(p.relative_to(root).as_posix() for p in root.rglob("*.yaml"))
    return sorted(names)


def resolve_config_file(filename: str | Path) -> Path:
    """``filename`` when it is a file; else the shipped config of that name; else ``filename`` unchanged (the
    caller reports the missing file)."""
    path = Path(filename).expanduser()
    if path.is_file():
        return path
    shipped = find_shipped_config(str(filename))
    return shipped if shipped is not None else path

"""Checkpoint names to local files: ``detectron2://`` names and ``http(s)://`` URLs are downloaded once into
iopath's cache; a ``?matching_heuristics=True`` query asks for suffix matching of the keys."""

from __future__ import annotations

import os
from typing import Optional, Tuple
from urllib.parse import parse_qs, urlparse

from iopath.common.file_io import HTTPURLHandler, PathManager

from .errors import CheckpointError

__all__ = ["D2_URL_BASE", "D2_URL_PREFIX", "local_checkpoint_path"]

D2_URL_PREFIX = "detectron2://"
D2_URL_BASE = "https://dl.fbaipublicfiles.com/detectron2/"

_PATH_MANAGER: Optional[PathManager] = None


def local_checkpoint_path(path: str) -> Tuple[str, bool]:
    """(local file, matching heuristics requested by a ``?matching_heuristics=True`` URL query) of ``path``: a
    local file, an ``http(s)://`` URL or a ``detectron2://`` name (detectron2's model zoo).

    Raises:
        FileNotFoundError: a local ``path`` that does not exist. CheckpointError: a download failed.
        ValueError: a URL query other than ``matching_heuristics``.
    """
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


def _path_manager() -> PathManager:
    """An iopath PathManager that downloads http(s) URLs into its cache (``$FVCORE_CACHE`` or
    ``~/.torch/iopath_cache``)."""
    global _PATH_MANAGER
    if _PATH_MANAGER is None:
        _PATH_MANAGER = PathManager()
        _PATH_MANAGER.register_handler(HTTPURLHandler())
    return _PATH_MANAGER


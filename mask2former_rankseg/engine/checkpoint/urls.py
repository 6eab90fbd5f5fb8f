"""Checkpoint names to local files: ``zoo://`` names (the model zoo, :mod:`.zoo`), ``detectron2://`` names and
``http(s)://`` URLs are downloaded once into iopath's cache (a zoo file's md5 checked where its name gives one); a
``?matching_heuristics=True`` query asks for suffix matching of the keys."""

from __future__ import annotations

import os
from typing import Optional, Tuple
from urllib.parse import parse_qs, urlparse

from iopath.common.file_io import HTTPURLHandler, PathManager, get_cache_dir

from .errors import CheckpointError
from .zoo import ZOO_PREFIX, check_md5_prefix, zoo_entry

__all__ = ["D2_URL_BASE", "D2_URL_PREFIX", "cache_path", "local_checkpoint_path"]

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
    md5_prefix = None
    if path.startswith(ZOO_PREFIX):
        try:
            entry = zoo_entry(path)
        except KeyError as e:
            raise CheckpointError(str(e.args[0])) from None
        path, md5_prefix = entry.url, entry.md5_prefix
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
            local = _path_manager().get_local_path(url)  # downloads once, with a progress bar
        except OSError as e:  # URLError is an OSError: no network, 404, ...
            raise CheckpointError(
                f"Cannot download checkpoint {url}: {e}. Download it yourself and put it at {cache_path(url)} (or "
                "set MODEL.WEIGHTS to the local file; MODEL.WEIGHTS '' starts from scratch)."
            ) from e
        if not check_md5_prefix(local, md5_prefix):
            os.remove(local)  # a corrupt or partial download: the next attempt fetches it again
            raise CheckpointError(f"The download of {url} is corrupt (its md5 does not start with {md5_prefix}, as "
                                  "its name says); it was removed. Run again to download it again.")
        return local, heuristics
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint {path} does not exist (check MODEL.WEIGHTS or the path given).")
    return path, heuristics


def cache_path(url: str) -> str:
    """Where the download of ``url`` is kept (iopath's cache: ``$FVCORE_CACHE`` or ``~/.torch/iopath_cache``, then
    the URL's path), so a file fetched by hand can be put there."""
    parsed = urlparse(url)
    return os.path.join(get_cache_dir(), os.path.dirname(parsed.path.lstrip("/")), url.split("/")[-1])


def _path_manager() -> PathManager:
    """An iopath PathManager that downloads http(s) URLs into its cache (``$FVCORE_CACHE`` or
    ``~/.torch/iopath_cache``)."""
    global _PATH_MANAGER
    if _PATH_MANAGER is None:
        _PATH_MANAGER = PathManager()
        _PATH_MANAGER.register_handler(HTTPURLHandler())
    return _PATH_MANAGER


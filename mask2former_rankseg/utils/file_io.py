"""Crash-safe file writing: a file is either the old one or the complete new one, never half-written."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

__all__ = ["atomic_write", "fsync_directory"]


def atomic_write(path: str | Path, write: Callable[[Any], Any], *, mode: str = "wb") -> None:
    """Call ``write(f)`` on a temporary file in ``path``'s directory, flush and fsync it, rename it to
    ``path``, then fsync the directory so that the rename itself survives a power loss.

    Readers see the old file or the complete new one, never a half-written file; on any error (or an
    interrupt) the temporary file is removed and the old file is left as it was. A process killed
    with SIGKILL while writing leaves only a hidden ``.<name>.*.tmp`` file beside ``path``.

    Args:
        path: destination; its directory is created if missing.
        write: receives the open temporary file.
        mode: ``"wb"`` (bytes) or ``"w"`` (UTF-8 text).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs are meant to be shared like other files
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_directory(path.parent)


def fsync_directory(directory: str | Path) -> None:
    """Flush a directory's entries (a rename into it) to disk; a no-op where directories cannot be opened
    (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems (e.g. certain network mounts) refuse fsync on directories
        pass
    finally:
        os.close(fd)

"""Crash-safe file writing: a file is either the old one or the complete new one, never half-written.

:class:`AtomicPath` is the one implementation (temporary file beside the destination, fsync, rename, fsync of the
directory); :func:`atomic_write` uses it for writers that take an open file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Optional, Type

__all__ = ["AtomicPath", "atomic_write", "fsync_directory"]

_O_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation below Python's own file objects


class AtomicPath:
    """A temporary file beside ``path``, for writers that need a file name (an image or video encoder, a zip
    archive): :meth:`commit` makes it ``path``, :meth:`discard` removes it.

    As a context manager it gives the temporary path, commits on a normal exit and discards on an exception (or
    an interrupt); a writer that outlives one block (a video written frame by frame) calls the two itself.
    Readers of ``path`` see the old file or the complete new one, never a half-written file. A process killed
    with SIGKILL while writing leaves only a hidden ``.<name>.*<suffix>`` file beside ``path``.

    Args:
        path: destination; its directory is created if missing.
        suffix: end of the temporary file's name (writers that choose the format by suffix need theirs).
    Attributes:
        path: the destination.
        tmp: the temporary file (created, empty, with the object).
    """

    def __init__(self, path: str | Path, *, suffix: str = ".tmp"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=suffix, dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(tmp)

    def commit(self) -> None:
        """fsync the temporary file, rename it to ``path``, then fsync the directory so that the rename itself
        survives a power loss. On an error the temporary file is removed and ``path`` is left as it was."""
        try:
            _fsync_file(self.tmp)
            os.chmod(self.tmp, 0o644)  # mkstemp creates 0600; outputs are meant to be shared like other files
            os.replace(self.tmp, self.path)
        except BaseException:
            self.discard()
            raise
        fsync_directory(self.path.parent)

    def discard(self) -> None:
        """Remove the temporary file (``path`` is left as it was)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)

    def __enter__(self) -> Path:
        return self.tmp

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 traceback: Optional[TracebackType]) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def atomic_write(path: str | Path, write: Callable[[Any], Any], *, mode: str = "wb") -> None:
    """Call ``write(f)`` on a temporary file in ``path``'s directory, then make it ``path`` as
    :meth:`AtomicPath.commit` does (fsync, rename, fsync of the directory).

    On any error (or an interrupt) the temporary file is removed and the old file is left as it was.

    Args:
        path: destination; its directory is created if missing.
        write: receives the open temporary file.
        mode: ``"wb"`` (bytes) or ``"w"`` (UTF-8 text).
    """
    encoding = {} if "b" in mode else {"encoding": "utf-8"}
    with AtomicPath(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | _O_BINARY)
        with os.fdopen(fd, mode, **encoding) as f:
            write(f)


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


def _fsync_file(path: Path) -> None:
    """Flush a closed file's contents to disk (fsync applies to the file, whichever descriptor wrote it)."""
    fd = os.open(path, os.O_RDWR | _O_BINARY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

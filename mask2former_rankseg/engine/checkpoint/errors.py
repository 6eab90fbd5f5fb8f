"""The one error type of checkpoint reading, matching and writing."""

from __future__ import annotations

__all__ = ["CheckpointError"]


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used: unsafe content, unreadable file, unknown format, or keys that do not
    match the model with ``strict=True``."""

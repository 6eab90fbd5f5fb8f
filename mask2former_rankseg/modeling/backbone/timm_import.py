"""timm, the optional dependency of the ViT and BEiT backbones (their blocks and weight layouts are timm's)."""

from __future__ import annotations

from types import ModuleType

__all__ = ["import_timm"]


def import_timm(user: str) -> ModuleType:
    """The ``timm`` module, or one ImportError saying how to install it. ``user`` names what needs it."""
    try:
        import timm  # optional (the `timm` extra): imported only when a ViT / BEiT is built or its weights read
    except ImportError as e:
        raise ImportError(
            f"{user} needs timm, which is not installed: pip install timm "
            "(or pip install 'mask2former_rankseg[timm]')."
        ) from e
    return timm

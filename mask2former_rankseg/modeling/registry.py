"""Name -> builder registries, keyed by upstream's names (``"MaskFormer"``, ``"build_resnet_backbone"``)."""

from typing import Callable, Dict, Iterator, Optional, Tuple, TypeVar

T = TypeVar("T")


class Registry:
    """A plain dict of named builders with a decorator to fill it."""

    def __init__(self, name: str):
        self._name = name
        self._obj_map: Dict[str, Callable] = {}

    def register(self, obj: Optional[T] = None, *, name: Optional[str] = None):
        """Register ``obj`` under ``name`` (default: its ``__name__``); usable as a decorator."""

        def _do(o: T) -> T:
            key = name or o.__name__
            if key in self._obj_map and self._obj_map[key] is not o:
                raise KeyError(f"{key!r} is already registered in the {self._name} registry.")
            self._obj_map[key] = o
            return o

        return _do if obj is None else _do(obj)

    def get(self, name: str) -> Callable:
        if name not in self._obj_map:
            raise KeyError(
                f"No {name!r} in the {self._name} registry; registered: {sorted(self._obj_map)}. "
                "Check the config key that names it."
            )
        return self._obj_map[name]

    def __contains__(self, name: str) -> bool:
        return name in self._obj_map

    def __iter__(self) -> Iterator[Tuple[str, Callable]]:
        return iter(self._obj_map.items())


BACKBONE_REGISTRY = Registry("BACKBONE")
"""Builders ``f(cfg, input_shape: ShapeSpec) -> Backbone``."""
SEM_SEG_HEAD_REGISTRY = Registry("SEM_SEG_HEAD")
"""Head classes with ``from_config(cfg, input_shape: Dict[str, ShapeSpec])``."""
PIXEL_DECODER_REGISTRY = Registry("PIXEL_DECODER")
"""Pixel decoder classes with ``from_config(cfg, input_shape: Dict[str, ShapeSpec])``."""
TRANSFORMER_DECODER_REGISTRY = Registry("TRANSFORMER_MODULE")
"""Transformer decoder classes with ``from_config(cfg, in_channels, mask_classification)``."""
META_ARCH_REGISTRY = Registry("META_ARCH")
"""Meta-architectures with ``from_config(cfg)``."""

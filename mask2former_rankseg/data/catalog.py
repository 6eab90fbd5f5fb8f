"""Dataset and metadata catalogs: names -> loader functions, names -> metadata attributes.

The builtin datasets are registered on the first use of either catalog (any lookup, listing or registration), by
the function given to :func:`register_builtins_on_first_use`; importing the package registers nothing.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List, Optional

logger = logging.getLogger(__name__)


class _BuiltinRegistration:
    """Runs the builtin datasets' registration once, when a catalog is first used."""

    def __init__(self) -> None:
        self._register: Optional[Callable[[], None]] = None
        self._state = "pending"  # -> "running" -> "done"

    def set(self, register: Callable[[], None]) -> None:
        self._register = register

    def ensure(self) -> None:
        """Register the builtins unless done or under way (registering them uses the catalogs too)."""
        if self._state != "pending" or self._register is None:
            return
        self._state = "running"
        try:
            self._register()
        except BaseException:
            self._state = "pending"  # the registration functions are idempotent: the next lookup retries
            raise
        self._state = "done"


_BUILTINS = _BuiltinRegistration()


def register_builtins_on_first_use(register: Callable[[], None]) -> None:
    """Have both catalogs call ``register()`` (once, idempotent) before their first lookup, listing or
    registration, so that builtin names resolve without any registration work at import time."""
    _BUILTINS.set(register)


class _DatasetCatalog:
    """Maps a dataset name to a function returning its list of dataset dicts (detectron2 keys)."""

    def __init__(self) -> None:
        self._loaders: Dict[str, Callable[[], List[dict]]] = {}

    def register(self, name: str, func: Callable[[], List[dict]]) -> None:
        _BUILTINS.ensure()
        if not callable(func):
            raise TypeError(f"DatasetCatalog.register({name!r}, ...) needs a callable, got {type(func)}.")
        if name in self._loaders:
            raise KeyError(f"Dataset {name!r} is already registered.")
        self._loaders[name] = func

    def get(self, name: str) -> List[dict]:
        """Call the loader of ``name`` and return its dataset dicts."""
        _BUILTINS.ensure()
        if name not in self._loaders:
            raise KeyError(
                f"Dataset {name!r} is not registered. Registered datasets: {', '.join(sorted(self._loaders))}."
            )
        return self._loaders[name]()

    def list(self) -> List[str]:
        _BUILTINS.ensure()
        return list(self._loaders)

    def remove(self, name: str) -> None:
        _BUILTINS.ensure()
        self._loaders.pop(name)

    def __contains__(self, name: str) -> bool:
        _BUILTINS.ensure()
        return name in self._loaders


class Metadata:
    """Attribute bag of one dataset (``stuff_classes``, ``stuff_colors``, ``ignore_label``, ...).

    Setting an attribute again to a different value raises, as detectron2's does.
    """

    def __init__(self, name: str):
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "_fields", {})

    def __getattr__(self, key: str) -> Any:
        fields = object.__getattribute__(self, "_fields")
        if key in fields:
            return fields[key]
        raise AttributeError(
            f"Metadata of dataset {self.name!r} has no attribute {key!r}; available: {sorted(fields)}."
        )

    def __setattr__(self, key: str, value: Any) -> None:
        fields = object.__getattribute__(self, "_fields")
        if key in fields and fields[key] != value:
            raise AssertionError(
                f"Attribute {key!r} of metadata {self.name!r} cannot be set to a different value "
                f"({fields[key]!r} != {value!r})."
            )
        fields[key] = value

    def set(self, **kwargs: Any) -> Metadata:
        for k, v in kwargs.items():
            setattr(self, k, v)
        return self

    def get(self, key: str, default: Any = None) -> Any:
        return object.__getattribute__(self, "_fields").get(key, default)

    def as_dict(self) -> Dict[str, Any]:
        return dict(object.__getattribute__(self, "_fields"))


class _MetadataCatalog:
    """Maps a dataset name to its :class:`Metadata` (created empty on first ``get``)."""

    def __init__(self) -> None:
        self._metadata: Dict[str, Metadata] = {}

    def get(self, name: str) -> Metadata:
        _BUILTINS.ensure()
        if name not in self._metadata:
            self._metadata[name] = Metadata(name)
        return self._metadata[name]

    def list(self) -> List[str]:
        _BUILTINS.ensure()
        return list(self._metadata)

    def remove(self, name: str) -> None:
        _BUILTINS.ensure()
        self._metadata.pop(name, None)


DatasetCatalog = _DatasetCatalog()
MetadataCatalog = _MetadataCatalog()

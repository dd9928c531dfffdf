"""Extension points registered by name, and plugins found through Python entry points.

As timm registers every model under a name and refuses a second one, each kind of part (network, loss, trainer
variant, augmentation pipeline) has one ``Registry``: a name maps to one object, registering a name twice is an
error that names both sources, and asking for an unknown name lists the names that exist. As pytest finds its
plugins, a user's own package adds parts with no edit to autoseg: it declares an entry point in the group
``autoseg.plugins`` (``[project.entry-points."autoseg.plugins"] mine = "mypkg.autoseg_parts"``), and the module it
names registers its parts when imported (a callable entry point is also called). Plugins are loaded once, the first
time a name is not found, so a checkpoint that names a plugin's network loads in any process (the CLI, a data
worker, the Python Predictor) without a step to remember.
"""
from __future__ import annotations

import importlib.metadata
from typing import Callable, Generic, Iterator, TypeVar

from .errors import AutosegError

T = TypeVar("T")
PLUGIN_GROUP = "autoseg.plugins"
BUILTIN = "autoseg"

_loaded: dict[str, str] = {}  # entry point name -> distribution, once load_plugins has run
_loading = False
_current_source: list[str] = []  # the plugin being imported, so registrations record where they came from


class Registry(Generic[T]):
    """Names of one kind of part. ``kind`` is what an error calls it ('loss', 'trainer', ...)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._sources: dict[str, str] = {}

    def register(self, name: str, obj: T | None = None) -> T | Callable[[T], T]:
        """``registry.register("name", obj)``, or ``@registry.register("name")`` on a function or class."""
        if obj is None:
            return lambda o: self._add(name, o)
        return self._add(name, obj)

    def _add(self, name: str, obj: T) -> T:
        if not isinstance(name, str) or not name or not name.replace("_", "").replace("-", "").isalnum():
            raise AutosegError(f"{self.kind} name {name!r} is not allowed: use letters, digits, '_' and '-'")
        source = _current_source[-1] if _current_source else BUILTIN
        if name in self._items:
            raise AutosegError(f"{self.kind} {name!r} is already registered (by {self._sources[name]}); "
                               f"{source} must choose another name")
        self._items[name] = obj
        self._sources[name] = source
        return obj

    def get(self, name: str) -> T:
        if name not in self._items:
            load_plugins()
        if name not in self._items:
            raise AutosegError(f"{self.kind} {name!r} is not registered; known: {', '.join(self.names())} "
                               f"(plugins add more through the {PLUGIN_GROUP!r} entry point; `autoseg plugins` "
                               "lists them)")
        return self._items[name]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def names(self) -> list[str]:
        return sorted(self._items)

    def source(self, name: str) -> str:
        return self._sources[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def load_plugins(force: bool = False) -> dict[str, str]:
    """Import every ``autoseg.plugins`` entry point once (their modules register parts); returns entry point name
    -> distribution. A plugin that fails to import is an AutosegError naming it, not a silent absence."""
    global _loading
    if (_loaded and not force) or _loading:
        return dict(_loaded)
    _loading = True
    try:
        for ep in importlib.metadata.entry_points(group=PLUGIN_GROUP):
            dist = getattr(ep, "dist", None)
            label = f"plugin {ep.name!r} ({dist.name if dist is not None else ep.value})"
            if ep.name in _loaded:
                continue
            _current_source.append(label)
            try:
                obj = ep.load()
                if callable(obj):
                    obj()
            except AutosegError:
                raise
            except Exception as e:  # a broken plugin names itself
                raise AutosegError(f"{label} failed to load from {ep.value!r}: {type(e).__name__}: {e}") from None
            finally:
                _current_source.pop()
            _loaded[ep.name] = dist.name if dist is not None else ep.value
        if not _loaded:
            _loaded["(none)"] = ""
    finally:
        _loading = False
    return {k: v for k, v in _loaded.items() if k != "(none)"}


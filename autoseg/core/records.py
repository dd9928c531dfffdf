"""Typed records read from JSON: frozen dataclasses whose loading rejects unknown, missing and ill-typed keys.

Every error names where the value was read (file, configuration and key path), so a typo in a hand-edited plan is
reported once, at load, instead of surfacing as a KeyError deep in preprocessing or being silently ignored.
Records also allow read-only mapping access (``rec["key"]``, ``dict(rec)``) with the JSON values, so code written
against the plain-dict form reads the same values; new code should use attributes.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import MISSING, fields
from typing import Any, Iterator, Sequence

from .errors import AutosegError


class Record(Mapping):
    """Base for frozen dataclasses with ``from_dict``/``to_dict``. Subclasses parse their fields in ``_parse``."""

    @classmethod
    def check_keys(cls, d: Any, where: str, legacy: Sequence[str] = ()) -> None:
        if not isinstance(d, dict):
            raise AutosegError(f"{where}: expected an object with keys {cls.field_names()}, got "
                               f"{type(d).__name__}")
        unknown = sorted(set(d) - set(cls.field_names()) - set(legacy))
        if unknown:
            raise AutosegError(f"{where}: unknown key(s) {unknown}; known keys are {sorted(cls.field_names())} "
                               "(fix the spelling or re-run `autoseg plan`)")
        missing = [f.name for f in fields(cls) if f.name not in d and f.default is MISSING
                   and f.default_factory is MISSING]
        if missing:
            raise AutosegError(f"{where}: missing key(s) {missing} (re-run `autoseg plan`)")

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, d: Any, where: str):
        cls.check_keys(d, where)
        return cls(**cls._parse(d, where))

    @classmethod
    def _parse(cls, d: dict, where: str) -> dict:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {f.name: to_json(getattr(self, f.name)) for f in fields(self)}

    def __getitem__(self, key: str) -> Any:
        if key not in self.field_names():
            raise KeyError(key)
        return to_json(getattr(self, key))

    def __iter__(self) -> Iterator[str]:
        return iter(self.field_names())

    def __len__(self) -> int:
        return len(fields(self))


def to_json(v: Any) -> Any:
    if isinstance(v, Record):
        return v.to_dict()
    if isinstance(v, (list, tuple)):
        return [to_json(x) for x in v]
    if isinstance(v, dict):
        return {k: to_json(x) for k, x in v.items()}
    return v


def _bad(where: str, want: str, v: Any) -> AutosegError:
    return AutosegError(f"{where}: expected {want}, got {v!r}")


def as_bool(v: Any, where: str) -> bool:
    if not isinstance(v, bool):
        raise _bad(where, "true or false", v)
    return v


def as_int(v: Any, where: str, lo: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or (lo is not None and v < lo):
        raise _bad(where, "an integer" + (f" >= {lo}" if lo is not None else ""), v)
    return v


def as_float(v: Any, where: str, lo: float | None = None) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or (lo is not None and v < lo):
        raise _bad(where, "a finite number" + (f" >= {lo:g}" if lo is not None else ""), v)
    return float(v)


def as_str(v: Any, where: str, choices: Sequence[str] | None = None) -> str:
    if not isinstance(v, str) or (choices is not None and v not in choices):
        raise _bad(where, f"one of {list(choices)}" if choices is not None else "a string", v)
    return v


def as_list(v: Any, where: str, n: int | None = None) -> list:
    if not isinstance(v, (list, tuple)) or (n is not None and len(v) != n):
        raise _bad(where, "a list" + (f" of {n} entries" if n is not None else ""), v)
    return list(v)


def as_ints(v: Any, where: str, n: int | None = None, lo: int | None = None) -> tuple[int, ...]:
    return tuple(as_int(x, f"{where}[{i}]", lo) for i, x in enumerate(as_list(v, where, n)))


def as_floats(v: Any, where: str, n: int | None = None, lo: float | None = None) -> tuple[float, ...]:
    return tuple(as_float(x, f"{where}[{i}]", lo) for i, x in enumerate(as_list(v, where, n)))

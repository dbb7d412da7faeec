"""The one JSON codec for every typed value that crosses a boundary or lands in a journal.

to_dict/from_dict turn a (frozen) dataclass into plain JSON data and back, reading the
class's resolved type hints: nested dataclasses, Optional, tuple[X, ...], list[X] and
dict[str, X] are rebuilt as the types they were. Unknown keys are an error (a journal or
request from a newer version must not be half-read).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def to_dict(obj: Any) -> Any:
    """Plain JSON data of a dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(obj)))


def to_json(obj: Any) -> str:
    return json.dumps(dataclasses.asdict(obj), indent=1, sort_keys=True)


def from_json(cls: type[T], text: str) -> T:
    """Inverse of to_json."""
    return from_dict(cls, json.loads(text))


def from_dict(cls: type[T], data: Any) -> T:
    """Inverse of to_dict: `data` rebuilt as `cls` (TypeError/ValueError/KeyError when it does not fit)."""
    return _build(cls, data)


def _build(hint: Any, value: Any) -> Any:
    if dataclasses.is_dataclass(hint):
        return _dataclass(hint, value)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _build(inner[0], value) if len(inner) == 1 else value
    if origin is tuple:
        item = args[0] if args else Any
        return tuple(_build(item, v) for v in value)
    if origin is list:
        return [_build(args[0] if args else Any, v) for v in value]
    if origin in (dict, typing.Mapping) or (origin is not None and getattr(origin, "__name__", "") == "Mapping"):
        item = args[1] if len(args) == 2 else Any
        return {k: _build(item, v) for k, v in value.items()}
    return value


def _dataclass(cls: type, data: Any) -> Any:
    if not isinstance(data, dict):
        raise TypeError(f"{cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints, names = _fields(cls)
    unknown = sorted(set(data) - names)
    if unknown:
        raise KeyError(f"{cls.__name__} has no field {unknown[0]!r}")
    return cls(**{k: _build(hints[k], v) for k, v in data.items()})


@functools.cache
def _fields(cls: type) -> tuple[dict[str, Any], frozenset[str]]:
    """A dataclass's resolved type hints and field names; resolving them costs more than the rest of a
    rebuild (a 100-step journal is rebuilt at every write)."""
    return typing.get_type_hints(cls), frozenset(f.name for f in dataclasses.fields(cls))

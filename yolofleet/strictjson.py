"""Strict JSON into frozen dataclasses: every field checked against its annotation.

:func:`load_object` parses bytes as one JSON object (``NaN`` and ``Infinity``, which Python's
parser accepts and JSON does not, are refused). :func:`build` makes a dataclass from such an
object, checking each field against its type hint, recursively:

- ``str``, ``int`` (``true`` is not an integer), ``float`` (an integer is accepted and
  converted; non-finite numbers are not), ``bool``;
- ``X | None``; enums (by value); ``tuple[T, ...]`` from a JSON array, every element checked;
  ``Mapping[str, V]`` / ``dict[str, V]`` from a JSON object; ``Any`` (anything JSON holds);
- nested dataclasses, built the same way from nested objects.

Fields the JSON lacks take their defaults (a missing field without one is an error); fields the
dataclass does not know are ignored, so older readers accept newer records. A value of the
wrong shape raises :class:`ShapeError` with a sentence naming the field, e.g. ``node state field
'node_id' must be a string, got 7``. An annotation this module cannot check is a programming
error and raises ``TypeError`` the first time a record of that type is built.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

R = TypeVar("R")

_MISSING = dataclasses.MISSING


class ShapeError(ValueError):
    """A JSON value does not have the shape its record type declares; ``path`` names the field.

    ``wrong_kind`` is true when the value at ``path`` itself is of the wrong JSON kind (rather
    than a field inside it, or a value its record refused).
    """

    def __init__(self, message: str, *, path: str = "", wrong_kind: bool = False) -> None:
        super().__init__(message)
        self.path = path
        self.wrong_kind = wrong_kind


def load_object(data: bytes, *, what: str) -> dict[str, Any]:
    """``data`` parsed as one JSON object; :class:`ShapeError` otherwise."""
    try:
        value = json.loads(data, parse_constant=_refuse_constant)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, NaN and Infinity
        raise ShapeError(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ShapeError(f"{what} must be a JSON object, got {_kind(value)}")
    return value


def build(kind: type[R], raw: Mapping[str, Any], *, what: str) -> R:
    """An instance of the dataclass ``kind`` from ``raw``, every field checked."""
    return _build(kind, raw, what=what, path="")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


_FIELDS: dict[type[Any], tuple[tuple[str, Any, bool], ...]] = {}


def _fields(kind: type[Any]) -> tuple[tuple[str, Any, bool], ...]:
    """``(name, type hint, required)`` for each init field of the dataclass ``kind`` (cached)."""
    found = _FIELDS.get(kind)
    if found is None:
        hints = typing.get_type_hints(kind)
        found = tuple(
            (f.name, hints[f.name], f.default is _MISSING and f.default_factory is _MISSING)
            for f in dataclasses.fields(kind)
            if f.init
        )
        _FIELDS[kind] = found
    return found


def _build(kind: type[R], raw: Mapping[str, Any], *, what: str, path: str) -> R:
    values: dict[str, Any] = {}
    for name, hint, required in _fields(kind):
        where = f"{path}.{name}" if path else name
        if name not in raw:
            if required:
                raise ShapeError(f"{what} is missing field {where!r}", path=where)
            continue
        values[name] = _check(raw[name], hint, what=what, path=where)
    try:
        return kind(**values)
    except (TypeError, ValueError) as exc:  # a __post_init__ refusing a value
        where = path or kind.__name__
        raise ShapeError(f"{what} field {where!r} is invalid: {exc}", path=path) from exc


def _check(value: Any, hint: Any, *, what: str, path: str) -> Any:
    """``value`` checked against ``hint`` (and converted: lists to tuples, objects to records)."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (types.UnionType, typing.Union):
        return _union(value, typing.get_args(hint), what=what, path=path)
    if origin is tuple:
        return _tuple(value, typing.get_args(hint), what=what, path=path)
    if origin in (Mapping, dict, typing.Mapping):
        return _mapping(value, typing.get_args(hint), what=what, path=path)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise _wrong(what, path, "an object", value)
        return _build(hint, value, what=what, path=path)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return _enum(value, hint, what=what, path=path)
    if hint in (str, int, float, bool, type(None)):
        return _scalar(value, hint, what=what, path=path)
    raise TypeError(f"strictjson cannot check {hint!r} (field {path!r} of {what})")


def _scalar(value: Any, hint: type, *, what: str, path: str) -> Any:
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise _wrong(what, path, "a finite number", value)
        return float(value)
    if hint is int and isinstance(value, bool):
        raise _wrong(what, path, _describe(int), value)
    if hint is type(None) and value is None:
        return None
    if not isinstance(value, hint):
        raise _wrong(what, path, _describe(hint), value)
    return value


def _union(value: Any, arms: tuple[Any, ...], *, what: str, path: str) -> Any:
    if value is None and type(None) in arms:
        return None
    candidates = [arm for arm in arms if arm is not type(None)]
    if len(candidates) == 1:
        try:
            return _check(value, candidates[0], what=what, path=path)
        except ShapeError as exc:
            if type(None) not in arms or exc.path != path or not exc.wrong_kind:
                raise  # a nested field's own error says more than "X or null"
        raise _wrong(what, path, f"{_describe(candidates[0])} or null", value)
    for arm in candidates:
        try:
            return _check(value, arm, what=what, path=path)
        except ShapeError:
            continue
    raise _wrong(what, path, " or ".join(_describe(arm) for arm in arms), value)


def _tuple(value: Any, args: tuple[Any, ...], *, what: str, path: str) -> tuple[Any, ...]:
    if not isinstance(value, list | tuple):
        raise _wrong(what, path, "a list", value)
    if len(args) == 2 and args[1] is Ellipsis:
        hints = [args[0]] * len(value)
    elif len(args) != len(value):
        raise _wrong(what, path, f"a list of {len(args)} items", value)
    else:
        hints = list(args)
    return tuple(
        _check(item, hint, what=what, path=f"{path}[{position}]")
        for position, (item, hint) in enumerate(zip(value, hints, strict=True))
    )


def _mapping(value: Any, args: tuple[Any, ...], *, what: str, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _wrong(what, path, "an object", value)
    value_hint = args[1] if len(args) == 2 else Any
    return {
        str(key): _check(item, value_hint, what=what, path=f"{path}[{key!r}]")
        for key, item in value.items()
    }


def _enum(value: Any, hint: type[enum.Enum], *, what: str, path: str) -> enum.Enum:
    try:
        return hint(value)
    except ValueError:
        allowed = ", ".join(repr(member.value) for member in hint)
        raise _wrong(what, path, f"one of {allowed}", value) from None


def _describe(hint: Any) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    if hint is type(None):
        return "null"
    if hint in names:
        return names[hint]
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return f"a {hint.__name__}"
    origin = typing.get_origin(hint)
    if origin is tuple:
        return "a list"
    return "an object"


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string"}.get(
        type(value), "an array" if isinstance(value, list) else "an object"
    )


def _wrong(what: str, path: str, expected: str, value: Any) -> ShapeError:
    shown = json.dumps(value) if _jsonable(value) else repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    message = f"{what} field {path!r} must be {expected}, got {shown}"
    return ShapeError(message, path=path, wrong_kind=True)


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True

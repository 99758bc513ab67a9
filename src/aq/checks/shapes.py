"""Checks for values with parts: arrays, tuples, mappings, dataclasses, TypedDicts, models.

Each part is checked by its own checker, and a part that fails adds its step
(``[3]``, ``['key']``, ``.field``) to the :class:`~aq.checks.base.Mismatch` as
it unwinds, so that the message points at it. Parts are walked only as deep as
the annotation goes, and a value is copied only when a part of it is converted.
"""

from __future__ import annotations

import collections.abc as abc
from collections.abc import Callable
from typing import Any

from aq.checks.base import MISSING, Check, Checker, Mismatch, clip, short_repr

__all__ = [
    "ARRAYS",
    "array",
    "dataclass_check",
    "fixed_tuple",
    "mapping",
    "model",
    "typed_dict_check",
]

ARRAYS: dict[Any, Any] = {  # annotation origin -> what a checked array becomes (None: a list)
    list: None,
    abc.Sequence: None,
    abc.MutableSequence: None,
    abc.Collection: None,
    abc.Iterable: None,
    tuple: tuple,
    set: set,
    abc.MutableSet: set,
    abc.Set: frozenset,
    frozenset: frozenset,
}

# --- arrays and tuples -----------------------------------------------------------------------


def array(name: str, origin: Any, item: Checker) -> Checker:
    """The checker of a homogeneous array annotation (``list[int]``, ``set[str]``, ...)."""
    make = ARRAYS[origin]
    if make in (set, frozenset):
        accepts: tuple[type, ...] = (list, tuple, set, frozenset)
    else:
        accepts = (list,) if origin is list else (list, tuple)
    check = _array_check(name, accepts, make, item)
    if make is None and item.check is None:
        return Checker(name, check, list, frozenset({list}), False)
    natives = frozenset() if make else frozenset({list})
    return Checker(name, check, natives=natives, converts=make is not None or item.converts)


def _array_check(
    name: str, accepts: tuple[type, ...], make: Callable[[Any], Any] | None, item: Checker
) -> Check:
    fast, check_item = item.fast, item.check

    def check(value: Any) -> Any:
        if not isinstance(value, accepts):
            raise Mismatch(name, value)
        if check_item is not None:
            value = _items(value, fast, check_item)
        if make is None:
            return value
        try:
            return make(value)
        except TypeError:  # unhashable items for a set
            raise Mismatch(name, value) from None

    return check


def _items(value: Any, fast: type, check: Check) -> Any:
    """Check each item; return ``value``, or a list of the items if one was converted."""
    for v in value:
        if type(v) is not fast:
            break
    else:
        return value  # the common case, at one type comparison per item
    out = None
    try:
        for i, v in enumerate(value):
            if type(v) is not fast:
                new = check(v)
                if new is not v:
                    if out is None:
                        out = list(value)
                    out[i] = new
    except Mismatch as exc:
        exc.path.append(f"[{i}]")
        raise
    return value if out is None else out


def fixed_tuple(name: str, items: list[Checker]) -> Checker:
    """The checker of ``tuple[X, Y]``: an array of exactly that many items, each its own type."""
    expected = f"{name} ({len(items)} items)"

    def check(value: Any) -> Any:
        if not isinstance(value, list | tuple) or len(value) != len(items):
            raise Mismatch(expected, value)
        out: list[Any] = []
        try:
            for item, v in zip(items, value, strict=True):
                out.append(v if item.check is None or type(v) is item.fast else item.check(v))
        except Mismatch as exc:
            exc.path.append(f"[{len(out)}]")
            raise
        return tuple(out)

    return Checker(name, check)


# --- mappings --------------------------------------------------------------------------------


def mapping(name: str, exact: bool, key: Checker, val: Checker) -> Checker:
    """The checker of ``dict[K, V]`` (``exact``) or ``Mapping[K, V]``."""
    accepts = dict if exact else abc.Mapping
    plain = key.check is None and val.check is None
    converts = key.converts or val.converts

    def check(value: Any) -> Any:
        if not isinstance(value, accepts):
            raise Mismatch(name, value)
        if plain:
            return value
        if converts:
            return {_key(key, k): _value(val, v, k) for k, v in value.items()}
        for k, v in value.items():
            _key(key, k)
            _value(val, v, k)
        return value

    if plain and exact:
        return Checker(name, check, dict, frozenset({dict}), False)
    return Checker(name, check, natives=frozenset({dict}), converts=converts)


def _key(checker: Checker, key: Any) -> Any:
    if checker.check is None or type(key) is checker.fast:
        return key
    try:
        return checker.check(key)
    except Mismatch:
        raise Mismatch(f"key of type {checker.name}", key, [f"[{short_repr(key)}]"]) from None


def _value(checker: Checker, value: Any, key: Any) -> Any:
    if checker.check is None or type(value) is checker.fast:
        return value
    try:
        return checker.check(value)
    except Mismatch as exc:
        exc.path.append(f"[{short_repr(key)}]")
        raise


# --- records: dataclasses, TypedDicts, pydantic models ----------------------------------------


def _fields(
    name: str, fields: dict[str, Checker], required: set[str], value: Any, dotted: bool
) -> dict[str, Any]:
    """Check the fields of a record sent as a JSON object; return them converted."""
    if type(value) is not dict:
        raise Mismatch(f"{name} (an object)", value)
    out = {}
    for key, v in value.items():
        field = fields.get(key)
        try:
            if field is None:
                raise Mismatch(f"one of {name}'s fields ({clip(', '.join(fields))})", v)
            out[key] = v if field.check is None or type(v) is field.fast else field.check(v)
        except Mismatch as exc:
            exc.path.append(_step(key, dotted))
            raise
    if len(out) < len(fields) and not required <= out.keys():  # every field sent: none missing
        missing = min(required - out.keys())
        raise Mismatch(fields[missing].name, MISSING, [_step(missing, dotted)])
    return out


def _step(key: Any, dotted: bool) -> str:
    return f".{key}" if dotted else f"[{short_repr(key)}]"


def dataclass_check(cls: type, fields: dict[str, Checker], required: set[str]) -> Check:
    """The check of dataclass ``cls`` from an object; ``fields`` may be filled in later."""
    name = cls.__name__

    def check(value: Any) -> Any:
        if isinstance(value, cls):
            return value
        kwargs = _fields(name, fields, required, value, dotted=True)
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:  # __post_init__ said no
            raise Mismatch(f"{name} ({clip(str(exc))})", value) from None

    return check


def typed_dict_check(name: str, fields: dict[str, Checker], required: set[str]) -> Check:
    """The check of a TypedDict; ``fields`` may be filled in later."""

    def check(value: Any) -> Any:
        return _fields(name, fields, required, value, dotted=False)

    return check


def model(name: str, validate: Callable[[Any], Any]) -> Checker:
    """The checker of a pydantic model: its own ``model_validate`` decides."""

    def check(value: Any) -> Any:
        try:
            return validate(value)
        except ValueError as exc:  # pydantic's ValidationError
            raise _model_mismatch(name, value, exc) from None

    return Checker(name, check)


def _model_mismatch(name: str, value: Any, exc: ValueError) -> Mismatch:
    """Point at the first field pydantic rejected, with its reason."""
    errors = getattr(exc, "errors", None)
    try:
        first = errors(include_url=False)[0]  # type: ignore[misc]
        path = [f"[{step}]" if isinstance(step, int) else f".{step}" for step in first["loc"]]
        return Mismatch(f"{name} ({clip(first['msg'])})", first.get("input", value), path[::-1])
    except Exception:  # not pydantic's error after all
        return Mismatch(f"{name} ({clip(str(exc))})", value)

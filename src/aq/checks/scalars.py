"""Checks for single values: scalars, values parsed from strings, enums, literals, unions.

``int`` is never a ``bool`` and ``float`` takes an ``int`` (as a float), but
nothing else is coerced: a string is not a number. ``datetime``, ``UUID`` and
the other types JSON has no form for are parsed from their string forms.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import decimal
import enum
import typing
import uuid
from collections.abc import Callable
from typing import Any

from aq.checks.base import ANYTHING, NEVER, Check, Checker, Mismatch

__all__ = ["PARSERS", "SCALARS", "enumeration", "instance", "literal", "parsed", "scalar", "union"]

SCALARS = (int, str, bool, float, None, type(None))
_DEFAULT_MISSING = getattr(enum.Enum._missing_, "__func__", None)

PARSERS: dict[type, Callable[[str], Any]] = {
    dt.datetime: dt.datetime.fromisoformat,
    dt.date: dt.date.fromisoformat,
    dt.time: dt.time.fromisoformat,
    uuid.UUID: uuid.UUID,
    decimal.Decimal: decimal.Decimal,
    bytes: lambda text: base64.b64decode(text, validate=True),
    bytearray: lambda text: bytearray(base64.b64decode(text, validate=True)),
}

# --- scalars ---------------------------------------------------------------------------------


def scalar(tp: Any) -> Checker:
    """The checker of a type JSON has: ``int``, ``str``, ``bool``, ``float`` or ``None``."""
    if tp is None or tp is type(None):
        return Checker("None", _none, type(None), frozenset({type(None)}), False)
    if tp is float:
        return Checker("float", _float, float, frozenset({float}))
    return Checker(tp.__name__, _exactly(tp), tp, frozenset({tp}), False)


def _none(value: Any) -> Any:
    if value is None:
        return None
    raise Mismatch("None", value)


def _exactly(tp: type) -> Check:
    def check(value: Any) -> Any:
        # bool is an int to isinstance, never to a task annotated int.
        if isinstance(value, tp) and (tp is bool or not isinstance(value, bool)):
            return value
        raise Mismatch(tp.__name__, value)

    return check


def _float(value: Any) -> Any:
    if isinstance(value, float):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**1023:
        return float(value)
    raise Mismatch("float", value)


def parsed(tp: type, parse: Callable[[str], Any]) -> Checker:
    """The checker of a type sent as a string (``datetime``, ``UUID``, ...), parsed by ``parse``."""
    name = tp.__name__

    def check(value: Any) -> Any:
        if isinstance(value, tp):
            return value
        if isinstance(value, str):
            try:
                return parse(value)
            except (ValueError, ArithmeticError):  # decimal's InvalidOperation is the latter
                pass
        raise Mismatch(name, value)

    return Checker(name, check)


def instance(tp: type) -> Checker:
    """The checker of any other class: the value must already be an instance."""
    try:
        isinstance(None, tp)
    except TypeError:  # a protocol that is not runtime-checkable, and the like
        return ANYTHING

    def check(value: Any) -> Any:
        if isinstance(value, tp):
            return value
        raise Mismatch(tp.__name__, value)

    return Checker(tp.__name__, check, converts=False)


def enumeration(tp: type[enum.Enum]) -> Checker:
    """The checker of an enum: a member, found by its value."""
    # Keyed by the value's type too, so that True does not find the member whose value is 1.
    by_value: dict[tuple[type, Any], enum.Enum] = {}
    for member in tp:
        with contextlib.suppress(TypeError):  # an unhashable value: JSON cannot give it back
            by_value[(type(member.value), member.value)] = member
    values = ", ".join(repr(m.value) for m in tp)
    name = f"{tp.__name__} ({values})" if len(values) <= 40 else tp.__name__
    # Flags combine members, and an enum may look values up its own way: both in _missing_.
    own_lookup = getattr(tp._missing_, "__func__", None) is not _DEFAULT_MISSING

    def check(value: Any) -> Any:
        if isinstance(value, tp):
            return value
        try:
            return by_value[(type(value), value)]
        except (KeyError, TypeError):
            pass
        if own_lookup and not isinstance(value, bool):
            try:
                return tp(value)
            except ValueError:
                pass
        raise Mismatch(name, value)

    return Checker(name, check)


def literal(values: tuple[Any, ...], name: str) -> Checker:
    """The checker of ``Literal[...]``: one of ``values``, of the same type."""
    # Keyed by type as well, so True is not 1 and 1 is not 1.0; an enum member also by its value.
    allowed = {(type(v), v): v for v in values}
    allowed.update({(type(v.value), v.value): v for v in values if isinstance(v, enum.Enum)})

    def check(value: Any) -> Any:
        try:
            return allowed[(type(value), value)]
        except (KeyError, TypeError):
            raise Mismatch(name, value) from None

    converts = any(isinstance(v, enum.Enum) for v in values)
    natives = frozenset(type(v) for v in values if not isinstance(v, enum.Enum))
    return Checker(name, check, natives=natives, converts=converts)


# --- unions ----------------------------------------------------------------------------------


def union(members: list[Checker], name: str) -> Checker:
    """The checker of a union: the value must fit one of ``members``."""
    # Members that take a value of its type as it is go first: int | float keeps 1 an int.
    natives = frozenset[type]().union(*(m.natives for m in members))
    orders = {t: _natives_first(members, t) for t in natives}
    default = _natives_first(members, NEVER)

    def check(value: Any) -> Any:
        failures: list[Mismatch] = []
        for fast, member_check in orders.get(type(value), default):
            if type(value) is fast:
                return value
            try:
                return member_check(value)
            except Mismatch as exc:
                failures.append(exc)
        inside = [f for f in failures if f.path]
        if len(inside) == 1:  # one member matched the outer shape: its reason is the useful one
            raise inside[0]
        raise Mismatch(name, value)

    # A shortcut only where the member tried first takes every value of that type as it is.
    fast = next((t for t, order in orders.items() if order[0][0] is t), NEVER)
    converts = any(m.converts for m in members)
    return Checker(name, check, fast, natives, converts)


def _natives_first(members: list[Checker], tp: type) -> list[tuple[type, Check]]:
    ordered = [m for m in members if tp in m.natives] + [m for m in members if tp not in m.natives]
    return [(m.fast, typing.cast(Check, m.check)) for m in ordered]

"""Checking a decoded JSON value against an annotation, converting it on the way.

A worker must not run a task with arguments its annotations do not describe.
:func:`checker_for` (or a :class:`Builder`, to share self-referential classes)
turns an annotation into a :class:`Checker`, once; its ``check`` either returns
the value as the annotation's type (a ``datetime`` from its ISO string, a
dataclass from an object, a ``float`` from an int) or raises :class:`Mismatch`,
which records what was expected, what was found and where inside the value. A
scalar costs one type comparison, and no value is walked further than its
annotation goes. This module maps annotations onto checkers; what a checker is
lives in :mod:`aq.checks.base`, the checkers of single values in
:mod:`aq.checks.scalars`, those of values with parts in :mod:`aq.checks.shapes`.
The rules, as users see them, are in docs/tasks.md.
"""

from __future__ import annotations

import collections.abc as abc
import dataclasses
import enum
import inspect
import pathlib
import types
import typing
from collections.abc import Iterable
from typing import Any

from aq.checks.base import ANYTHING, MISSING, Check, Checker, Mismatch, describe, short_repr
from aq.checks.scalars import (
    PARSERS,
    SCALARS,
    enumeration,
    instance,
    literal,
    parsed,
    scalar,
    union,
)
from aq.checks.shapes import (
    ARRAYS,
    array,
    dataclass_check,
    fixed_tuple,
    mapping,
    model,
    typed_dict_check,
)

__all__ = [
    "ANYTHING",
    "MISSING",
    "Builder",
    "Check",
    "Checker",
    "Mismatch",
    "checker_for",
    "describe",
    "name_of",
    "short_repr",
]

_MAPPINGS = (dict, abc.Mapping, abc.MutableMapping)
_UNIONS = (typing.Union, types.UnionType)


def checker_for(tp: Any) -> Checker:
    """Build the checker for annotation ``tp``."""
    return Builder().build(tp)


def name_of(tp: Any) -> str:
    """``tp`` as messages show it: ``int``, ``list[datetime]``, ``int | None``."""
    if tp is None or tp is type(None):
        return "None"
    if tp is Ellipsis:
        return "..."
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in _UNIONS:
        return " | ".join(name_of(a) for a in args)
    if origin is typing.Literal:
        return f"Literal[{', '.join(repr(a) for a in args)}]"
    if origin is typing.Annotated:
        return name_of(args[0])
    if origin is not None:
        inner = f"[{', '.join(name_of(a) for a in args)}]" if args else ""
        return name_of(origin) + inner
    return tp.__name__ if isinstance(tp, type) else str(tp).removeprefix("typing.")


class Builder:
    """Builds checkers; remembers the classes it built, so that they may refer to themselves."""

    def __init__(self) -> None:
        self.classes: dict[type, Checker] = {}

    def build(self, tp: Any) -> Checker:
        """The checker for annotation ``tp``."""
        if tp is Any or tp is object or tp is inspect.Parameter.empty:
            return ANYTHING
        if tp in SCALARS:
            return scalar(tp)
        if isinstance(tp, typing.NewType):
            return self.build(tp.__supertype__)
        if isinstance(tp, typing.TypeVar):
            return self._type_var(tp)
        origin = typing.get_origin(tp)
        if origin is not None:
            return self._generic(tp, origin, typing.get_args(tp))
        if isinstance(tp, type):
            return self._class(tp)
        return ANYTHING  # an unresolved string, Unpack[...]: forms with no runtime test

    def _type_var(self, tp: typing.TypeVar) -> Checker:
        if tp.__bound__ is not None:
            return self.build(tp.__bound__)
        if tp.__constraints__:
            return self._union(tp.__constraints__, name_of(tp))
        return ANYTHING

    def _generic(self, tp: Any, origin: Any, args: tuple[Any, ...]) -> Checker:
        if origin is typing.Annotated:
            return self.build(args[0])
        if origin in _UNIONS:
            return self._union(args, name_of(tp))
        if origin is typing.Literal:
            return literal(args, name_of(tp))
        if not isinstance(origin, type):
            return ANYTHING  # ClassVar[...], Unpack[...] and the like
        if not args:
            return self._class(origin)  # typing.List and friends, unsubscripted
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return fixed_tuple(name_of(tp), [self.build(a) for a in args])
        if origin in ARRAYS:
            return array(name_of(tp), origin, self.build(args[0]))
        if origin in _MAPPINGS:
            key, value = (self.build(a) for a in args)
            return mapping(name_of(tp), origin is dict, key, value)
        return self._class(origin)  # a generic class: checked as the class, its parameters unused

    def _class(self, tp: type) -> Checker:
        if tp in ARRAYS:
            return array(tp.__name__, tp, ANYTHING)
        if tp in _MAPPINGS:
            return mapping(tp.__name__, tp is dict, ANYTHING, ANYTHING)
        if tp in PARSERS or issubclass(tp, pathlib.PurePath):
            return parsed(tp, PARSERS.get(tp, tp))
        if issubclass(tp, enum.Enum):
            return enumeration(tp)
        if tp in self.classes:
            return self.classes[tp]
        if dataclasses.is_dataclass(tp) or typing.is_typeddict(tp):
            return self._record(tp)
        validate = getattr(tp, "model_validate", None)
        if callable(validate):  # a pydantic model
            return model(tp.__name__, validate)
        return instance(tp)

    def _union(self, members: Iterable[Any], name: str) -> Checker:
        checkers = [self.build(m) for m in members]
        if any(c.check is None for c in checkers):
            return ANYTHING
        return union(checkers, name)

    def _record(self, tp: type) -> Checker:
        fields: dict[str, Checker] = {}
        required: set[str] = set()
        if typing.is_typeddict(tp):
            check = typed_dict_check(tp.__name__, fields, required)
            checker = Checker(tp.__name__, check, natives=frozenset({dict}))
        else:
            checker = Checker(tp.__name__, dataclass_check(tp, fields, required))
        self.classes[tp] = checker  # before its fields, which may name the class again
        try:
            self._fill(tp, fields, required)
        except BaseException:
            del self.classes[tp]
            raise
        return checker

    def _fill(self, tp: type, fields: dict[str, Checker], required: set[str]) -> None:
        hints = typing.get_type_hints(tp)
        if typing.is_typeddict(tp):
            names: Iterable[str] = hints
            required.update(typing.cast(frozenset[str], tp.__required_keys__))  # type: ignore[attr-defined]
        else:
            init = [f for f in dataclasses.fields(tp) if f.init]
            names = [f.name for f in init]
            required.update(f.name for f in init if _has_no_default(f))
        for field in names:
            fields[field] = self.build(hints.get(field, Any))


def _has_no_default(field: dataclasses.Field[Any]) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING

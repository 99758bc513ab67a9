"""Turning decoded JSON back into the types a task declares.

The wire carries only JSON. A task annotated ``def f(when: datetime, user: User)``
should still receive a ``datetime`` and a ``User``, and never a string where it
declared an ``int``. On the worker side, :class:`ArgumentConverter` binds each
call to the task's signature and checks every argument against its annotation
with the checkers of :mod:`aq.checks`, converting as it goes; a call that does
not fit raises :class:`aq.SerializationError` before the task runs. On the
producer side, :func:`return_converter` converts results leniently: what it
cannot convert it passes through as JSON. Both are built once per task.
"""

from __future__ import annotations

import base64
import collections.abc
import dataclasses
import datetime as dt
import decimal
import enum
import inspect
import logging
import pathlib
import sys
import types
import typing
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from aq.checks import ANYTHING, MISSING, Builder, Check, Checker, Mismatch, describe
from aq.errors import SerializationError

__all__ = ["ArgumentConverter", "Converter", "converter_for", "return_converter"]

Converter = Callable[[Any], Any]

log = logging.getLogger("aq.worker")

_PLAIN = (int, str, bool, type(None), Any, object)
_FROM_STRING: dict[Any, Converter] = {
    dt.datetime: dt.datetime.fromisoformat,
    dt.date: dt.date.fromisoformat,
    dt.time: dt.time.fromisoformat,
    uuid.UUID: uuid.UUID,
    decimal.Decimal: decimal.Decimal,
    pathlib.Path: pathlib.Path,
    bytes: base64.b64decode,
}


def _float(value: Any) -> Any:
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _optional(inner: Converter) -> Converter:
    return lambda value: None if value is None else inner(value)


def _sequence(factory: Callable[[Any], Any], item: Converter | None) -> Converter:
    if item is None:
        return factory
    return lambda value: factory(item(v) for v in value)


def _mapping(key: Converter | None, val: Converter | None) -> Converter:
    k = key or (lambda x: x)
    v = val or (lambda x: x)
    return lambda value: {k(a): v(b) for a, b in value.items()}


def _dataclass(cls: type[Any]) -> Converter:
    # Field converters are built on first use, so a dataclass may refer to itself.
    fields: dict[str, Converter | None] = {}

    def build(value: Any) -> Any:
        if isinstance(value, cls):
            return value
        if not fields:
            hints = typing.get_type_hints(cls)
            for f in dataclasses.fields(cls):
                if f.init:
                    fields[f.name] = converter_for(hints.get(f.name, Any))
        kwargs = {}
        for name, item in value.items():
            convert = fields.get(name)
            kwargs[name] = convert(item) if convert is not None else item
        return cls(**kwargs)

    return build


def converter_for(tp: Any) -> Converter | None:
    """Return a function that turns a JSON value into ``tp``, or ``None`` if none is needed."""
    if tp in _PLAIN or tp is inspect.Parameter.empty:
        return None
    if tp is float:
        return _float
    if tp in _FROM_STRING:
        return _from_string(tp)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        if len(members) == 1:
            inner = converter_for(members[0])
            return None if inner is None else _optional(inner)
        return None  # ambiguous unions are passed through as JSON
    if origin in (list, set, frozenset, tuple, Sequence):
        item = converter_for(args[0]) if args else None
        factory: Callable[[Any], Any] = {set: set, frozenset: frozenset, tuple: tuple}.get(
            origin, list
        )
        if origin is tuple and args and args[-1] is not Ellipsis:
            return _fixed_tuple([converter_for(a) for a in args])
        if item is None and factory is list:
            return None
        return _sequence(factory, item)
    if origin in (dict, collections.abc.Mapping):
        key, val = (converter_for(a) for a in args) if args else (None, None)
        return None if key is None and val is None else _mapping(key, val)
    if origin is typing.Literal or origin is typing.Annotated:
        return converter_for(args[0]) if origin is typing.Annotated else None
    if isinstance(tp, type):
        if issubclass(tp, enum.Enum):
            return tp
        if dataclasses.is_dataclass(tp):
            return _dataclass(tp)
        validate = getattr(tp, "model_validate", None)
        if validate is not None:
            return typing.cast(Converter, validate)
        if tp in (list, dict):
            return None
        if tp in (set, frozenset, tuple):
            return tp
    return None


def _from_string(tp: Any) -> Converter:
    parse = _FROM_STRING[tp]

    def convert(value: Any) -> Any:
        return value if isinstance(value, tp) else parse(value)

    return convert


def _fixed_tuple(items: list[Converter | None]) -> Converter:
    def convert(value: Any) -> Any:
        return tuple(c(v) if c is not None else v for c, v in zip(items, value, strict=True))

    return convert


def return_converter(fn: Callable[..., Any]) -> Converter | None:
    """Converter for ``fn``'s declared return type (unwrapping async generators' item type)."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable forward references: fall back to raw JSON
        return None
    tp = hints.get("return", Any)
    if inspect.isasyncgenfunction(fn):
        args = typing.get_args(tp)
        tp = args[0] if args else Any
    return converter_for(tp)


_Spec = tuple[str, type, Check | None]  # parameter name, its fast type, its check
_UNCHECKED: _Spec = ("", object, None)
_KEYWORD_ONLY = sys.maxsize  # the "position" of a keyword-only parameter


def _parameter_hints(fn: Callable[..., Any], label: str) -> dict[str, Any]:
    """``fn``'s resolved annotations; one that cannot be resolved is left out, with a warning."""
    try:
        return typing.get_type_hints(fn)
    except Exception:  # resolve them one by one, so that one bad name spoils only itself
        pass
    namespace = getattr(inspect.unwrap(fn), "__globals__", {})
    hints: dict[str, Any] = {}
    for name, annotation in getattr(fn, "__annotations__", {}).items():
        holder = types.SimpleNamespace(__annotations__={name: annotation})
        try:
            hints.update(typing.get_type_hints(holder, namespace))
        except Exception as exc:
            if name != "return":
                log.warning("%s: argument %r is not checked: %s", label, name, exc)
    return hints


class ArgumentConverter:
    """Checks the decoded ``args`` and ``kwargs`` of a call to ``fn`` and converts them.

    Built once per task from ``fn``'s signature and annotations. A call with a
    missing, surplus or unknown argument, or an argument that does not fit its
    annotation (see :mod:`aq.checks`), raises :class:`aq.SerializationError`
    naming the argument, the type expected and what was sent. ``needed`` says
    whether some argument may be converted to another object; every argument
    is checked either way.
    """

    __slots__ = (
        "_fn",
        "_keyword",
        "_max",
        "_min",
        "_positional",
        "_positional_only",
        "_required",
        "_unchecked",
        "_var_keyword",
        "_var_positional",
        "needed",
    )

    def __init__(self, fn: Callable[..., Any]) -> None:
        self._fn = f"{getattr(fn, '__name__', 'task')}()"
        hints = _parameter_hints(fn, self._fn)
        builder = Builder()
        self._positional: list[_Spec] = []
        self._keyword: dict[str, tuple[int, _Spec]] = {}
        self._positional_only: set[str] = set()
        self._required: list[tuple[int, str, str]] = []  # position, name, type expected
        self._var_positional = _UNCHECKED
        self._var_keyword: _Spec | None = None
        converts = False
        params = inspect.signature(fn).parameters.values()
        for param in params:
            checker = self._checker(builder, param.name, hints)
            converts = converts or checker.converts
            self._add(param, (param.name, checker.fast, checker.check), checker.name)
        self.needed = converts
        self._max = len(self._positional)
        if any(p.kind is p.VAR_POSITIONAL for p in params):
            self._max = sys.maxsize
        # Calls with no keywords and a count in this range need no further arity check.
        self._min = max((p + 1 for p, _, _ in self._required), default=0)
        specs = [
            *self._positional,
            *(spec for _, spec in self._keyword.values()),
            self._var_positional,
            self._var_keyword or _UNCHECKED,
        ]
        #: No argument is annotated: only the call's shape is checked.
        self._unchecked = all(check is None for _, _, check in specs)

    def _checker(self, builder: Builder, name: str, hints: dict[str, Any]) -> Checker:
        try:
            return builder.build(hints.get(name, Any))
        except Exception as exc:  # e.g. a dataclass field naming a type that cannot be resolved
            log.warning("%s: argument %r is not checked: %s", self._fn, name, exc)
            return ANYTHING

    def _add(self, param: inspect.Parameter, spec: _Spec, expected: str) -> None:
        kind = param.kind
        if kind is param.VAR_POSITIONAL:
            self._var_positional = spec
            return
        if kind is param.VAR_KEYWORD:
            self._var_keyword = spec
            return
        position = _KEYWORD_ONLY
        if kind is not param.KEYWORD_ONLY:
            position = len(self._positional)
            self._positional.append(spec)
        if kind is param.POSITIONAL_ONLY:
            self._positional_only.add(param.name)
        else:
            self._keyword[param.name] = (position, spec)
        if param.default is param.empty:
            self._required.append((position, param.name, expected))

    def __call__(self, args: list[Any], kwargs: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        if kwargs or not self._min <= len(args) <= self._max:
            self._check_arity(len(args), kwargs)
        if self._unchecked:
            return args, kwargs
        new_args = self._positional_args(args)
        return new_args, self._keyword_args(kwargs) if kwargs else kwargs

    def _positional_args(self, args: list[Any]) -> list[Any]:
        specs, count = self._positional, len(self._positional)
        out = args
        for i, value in enumerate(args):
            name, fast, check = specs[i] if i < count else self._var_positional
            if check is None or type(value) is fast:
                continue
            new = self._check(name if i < count else f"{name}[{i - count}]", check, value)
            if new is not value:
                if out is args:
                    out = list(args)
                out[i] = new
        return out

    def _keyword_args(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        out = kwargs
        for key, value in kwargs.items():
            entry = self._keyword.get(key)
            _, fast, check = entry[1] if entry is not None else self._var_keyword or _UNCHECKED
            if check is None or type(value) is fast:
                continue
            new = self._check(key, check, value)
            if new is not value:
                if out is kwargs:
                    out = dict(kwargs)
                out[key] = new
        return out

    def _check(self, name: str, check: Check, value: Any) -> Any:
        try:
            return check(value)
        except Mismatch as exc:
            where = exc.where(name)
            raise SerializationError(f"argument {where!r} of {self._fn}: {exc.problem()}") from None
        except RecursionError:  # a self-referential dataclass sent a very deep value
            raise SerializationError(
                f"argument {name!r} of {self._fn}: nested too deeply to check"
            ) from None

    def _check_arity(self, count: int, kwargs: dict[str, Any]) -> None:
        """Raise if the call does not bind to the signature, as Python's own call would."""
        fn = self._fn
        if count > self._max:
            raise SerializationError(
                f"{fn} takes at most {self._max} positional argument(s), got {count}"
            )
        for key in kwargs:
            entry = self._keyword.get(key)
            if entry is None and self._var_keyword is None:
                if key in self._positional_only:
                    raise SerializationError(f"{fn} got positional-only argument {key!r} by name")
                raise SerializationError(f"{fn} got an unexpected keyword argument {key!r}")
            if entry is not None and entry[0] < count:
                raise SerializationError(f"{fn} got multiple values for argument {key!r}")
        for position, name, expected in self._required:
            given = name in kwargs and name not in self._positional_only
            if position >= count and not given:
                raise SerializationError(
                    f"argument {name!r} of {fn}: expected {expected}, got {describe(MISSING)}"
                )

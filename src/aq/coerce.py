"""Turning decoded JSON back into the types a task declares.

The wire carries only JSON. A task annotated ``def f(when: datetime, user: User)``
should still receive a ``datetime`` and a ``User``: this module builds, once per
task, converters from its annotations (arguments on the worker side, the return
type on the producer side). Types that JSON already represents exactly get no
converter at all, so the common case costs nothing per message.
"""

from __future__ import annotations

import base64
import collections.abc
import dataclasses
import datetime as dt
import decimal
import enum
import inspect
import pathlib
import types
import typing
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from aq.errors import SerializationError

__all__ = ["ArgumentConverter", "Converter", "converter_for", "return_converter"]

Converter = Callable[[Any], Any]

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


class ArgumentConverter:
    """Converts the decoded ``args`` and ``kwargs`` of a call to ``fn``'s annotations."""

    __slots__ = ("_keyword", "_positional", "_var_keyword", "_var_positional", "needed")

    def __init__(self, fn: Callable[..., Any]) -> None:
        try:
            hints = typing.get_type_hints(fn)
        except Exception:
            hints = {}
        self._positional: list[Converter | None] = []
        self._keyword: dict[str, Converter | None] = {}
        self._var_positional: Converter | None = None
        self._var_keyword: Converter | None = None
        for param in inspect.signature(fn).parameters.values():
            convert = converter_for(hints.get(param.name, Any))
            if param.kind is param.VAR_POSITIONAL:
                self._var_positional = convert
            elif param.kind is param.VAR_KEYWORD:
                self._var_keyword = convert
            else:
                if param.kind is not param.KEYWORD_ONLY:
                    self._positional.append(convert)
                self._keyword[param.name] = convert
        everything = (*self._keyword.values(), self._var_positional, self._var_keyword)
        self.needed = any(c is not None for c in everything)

    def __call__(self, args: list[Any], kwargs: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        if not self.needed:
            return args, kwargs
        try:
            n = len(self._positional)
            new_args = [
                (c(a) if (c := self._positional[i] if i < n else self._var_positional) else a)
                for i, a in enumerate(args)
            ]
            new_kwargs = {
                k: (c(v) if (c := self._keyword.get(k, self._var_keyword)) else v)
                for k, v in kwargs.items()
            }
        except (TypeError, ValueError, AttributeError, ArithmeticError, KeyError) as exc:
            raise SerializationError(f"cannot convert arguments to declared types: {exc}") from exc
        return new_args, new_kwargs

"""The codec that turns Python values into wire bytes and back.

JSON through orjson is the default. orjson already writes dataclasses,
datetimes, dates, times, UUIDs and enums; :func:`json_default` adds pydantic
models, bytes (base64), sets, decimals and paths. Nothing here executes code
found in a payload: decoding yields only JSON types, and turning them back into
richer types is the job of :mod:`aq.coerce`, driven by the task's annotations.
"""

from __future__ import annotations

import base64
import decimal
import pathlib
from typing import Any, Protocol

import orjson

from aq.errors import MessageDecodeError, SerializationError

__all__ = ["JSONSerializer", "Serializer", "json_default"]


class Serializer(Protocol):
    """What the broker needs from a codec: bytes out, JSON-shaped values in."""

    content_type: str

    def dumps(self, value: Any) -> bytes:
        """Encode ``value``; raise :class:`SerializationError` if it cannot be."""
        ...

    def loads(self, data: bytes) -> Any:
        """Decode ``data``; raise :class:`MessageDecodeError` if it is not valid."""
        ...


def json_default(value: Any) -> Any:
    """Encode the types orjson does not know natively, or raise ``TypeError``."""
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(value).decode("ascii")
    dump = getattr(value, "model_dump", None)
    if dump is not None and callable(dump):  # pydantic v2 models
        return dump(mode="json")
    if isinstance(value, set | frozenset):
        return list(value)
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, pathlib.PurePath):
        return str(value)
    raise TypeError(f"{type(value).__qualname__} is not JSON serializable")


class JSONSerializer:
    """The default codec: UTF-8 JSON via orjson."""

    content_type = "application/json"

    def dumps(self, value: Any) -> bytes:
        try:
            return orjson.dumps(value, default=json_default)
        except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
            raise SerializationError(str(exc)) from exc

    def loads(self, data: bytes) -> Any:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise MessageDecodeError(f"not valid JSON: {exc}") from exc

"""The serializers that turn Python values into payload bytes and back.

JSON through orjson is the default. orjson already writes dataclasses,
datetimes, dates, times, UUIDs and enums; :func:`json_default` adds pydantic
models, bytes (base64), sets, decimals and paths. msgpack (the extra
``aq-tasks[msgpack]``) writes the same values the same way, except that bytes
stay bytes. Nothing here executes code found in a payload: decoding yields only
JSON types (and bytes, and datetimes from msgpack timestamps), and turning them
back into richer types is the job of :mod:`aq.coerce`, driven by the task's
annotations. How a payload is framed, signed and compressed is
:mod:`aq.envelope`'s business; :func:`serializer_for` finds a serializer by the
content type a frame names.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import enum
import pathlib
import uuid
from typing import Any, Final, Protocol

import orjson

from aq.errors import ConfigurationError, MessageDecodeError, SerializationError

__all__ = [
    "JSON",
    "MSGPACK",
    "JSONSerializer",
    "MsgpackSerializer",
    "Serializer",
    "json_default",
    "serializer_for",
]

#: The content types of the two built-in serializers.
JSON: Final = "application/json"
MSGPACK: Final = "application/msgpack"


class Serializer(Protocol):
    """What the broker needs from a codec: bytes out, JSON-shaped values in."""

    @property
    def content_type(self) -> str:
        """The MIME type its payloads are, named in every framed message."""
        ...

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

    content_type = JSON

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


def _msgpack_default(value: Any) -> Any:
    """What msgpack does not write itself, written as orjson would write it."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    return json_default(value)


def _no_extensions(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack extension type {code} is not part of aq's wire format")


class MsgpackSerializer:
    """Compact binary payloads through the ``msgpack`` package: bytes travel as
    bytes, not base64; every other value as :class:`JSONSerializer` writes it,
    except that maps may have keys other than strings (ints, say), as msgpack
    allows and JSON does not.

    Raises:
        aq.ConfigurationError: the msgpack package is not installed.
    """

    content_type = MSGPACK

    def __init__(self) -> None:
        try:
            import msgpack
        except ImportError:
            raise ConfigurationError(
                "serializer='msgpack' needs the msgpack package: pip install 'aq-tasks[msgpack]'"
            ) from None
        self._msgpack = msgpack

    def dumps(self, value: Any) -> bytes:
        try:  # a Packer per call: one shared by threads would interleave their output
            return self._msgpack.packb(  # type: ignore[no-any-return]
                value, default=_msgpack_default, datetime=False
            )
        except (TypeError, ValueError, OverflowError) as exc:
            raise SerializationError(str(exc)) from exc

    def loads(self, data: bytes) -> Any:
        msgpack = self._msgpack
        try:
            return msgpack.unpackb(
                data, raw=False, timestamp=3, ext_hook=_no_extensions, strict_map_key=False
            )
        except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as exc:
            text = str(exc) or type(exc).__name__  # a StackError has no text
            if isinstance(exc, msgpack.exceptions.StackError):
                text = "nested too deep"
            raise MessageDecodeError(f"not valid msgpack: {text}") from exc


_BUILT_IN: dict[str, Serializer] = {}


def serializer_for(name: str) -> Serializer:
    """The built-in serializer called ``name`` (``"json"`` or ``"msgpack"``) or
    with that content type, made once per process.

    Raises:
        aq.ConfigurationError: no such serializer, or its package is missing.
    """
    content_type = {"json": JSON, "msgpack": MSGPACK}.get(name, name)
    found = _BUILT_IN.get(content_type)
    if found is None:
        if content_type == JSON:
            found = JSONSerializer()
        elif content_type == MSGPACK:
            found = MsgpackSerializer()
        else:
            raise ConfigurationError(
                f"unknown serializer {name!r}: use 'json', 'msgpack' or a Serializer object"
            )
        _BUILT_IN[content_type] = found
    return found

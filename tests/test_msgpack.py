"""Specification of aq.serializer.MsgpackSerializer: compact binary payloads.

Bytes travel as bytes; every other value is written as the JSON serializer writes
it, so a task reads the same arguments whichever serializer its producer used.
Decoding yields plain values only: no extension types, nothing after the value.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import decimal
import enum
import pathlib
import uuid
from typing import Any

import msgpack
import orjson
import pydantic
import pytest

import aq
from aq.serializer import MSGPACK, JSONSerializer, MsgpackSerializer, Serializer, serializer_for


@pytest.fixture
def serializer() -> MsgpackSerializer:
    return MsgpackSerializer()


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 2


class Pair(enum.Enum):
    ORIGIN = (0, 0)


@dataclasses.dataclass
class Point:
    x: int
    y: int


@dataclasses.dataclass
class Event:
    at: dt.datetime
    color: Color
    where: Point
    tags: frozenset[str]


class User(pydantic.BaseModel):
    id: int
    joined: dt.datetime
    ref: uuid.UUID


WHEN = dt.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=dt.UTC)

#: Values that are not JSON types, each written as the JSON serializer writes it.
RICH_VALUES: dict[str, Any] = {
    "aware-datetime": WHEN,
    "offset-datetime": dt.datetime(2024, 1, 2, 3, 4, tzinfo=dt.timezone(dt.timedelta(hours=5.5))),
    "naive-datetime": dt.datetime(2024, 1, 2, 3, 4, 5),
    "date": dt.date(2024, 1, 2),
    "time": dt.time(3, 4, 5, 6),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "enum": Color.RED,
    "int-enum": Level.HIGH,
    "tuple-enum": Pair.ORIGIN,
    "dataclass": Point(1, 2),
    "nested-dataclass": Event(WHEN, Color.RED, Point(3, 4), frozenset({"a"})),
    "pydantic-model": User(id=1, joined=WHEN, ref=uuid.UUID(int=7)),
    "set": {1, 2, 3},
    "frozenset": frozenset({"x", "y"}),
    "decimal": decimal.Decimal("1.10"),
    "path": pathlib.PurePosixPath("/srv/data/file.csv"),
    "tuple": (1, "two", None),
    "in-containers": [WHEN, {"id": uuid.UUID(int=1), "level": Level.HIGH}, (Color.RED,)],
}


def test_msgpack_serializer_satisfies_the_serializer_protocol() -> None:
    codec: Serializer = MsgpackSerializer()

    assert codec.content_type == "application/msgpack" == MSGPACK


@pytest.mark.parametrize("name", ["msgpack", "application/msgpack"])
def test_serializer_for_finds_msgpack_by_name_or_content_type(name: str) -> None:
    assert isinstance(serializer_for(name), MsgpackSerializer)


def test_serializer_for_makes_one_msgpack_serializer_per_process() -> None:
    assert serializer_for("msgpack") is serializer_for("application/msgpack")


@pytest.mark.parametrize(
    "value",
    [None, True, 0, -17, 2**63 - 1, -(2**63), 1.5, "", "héllo ✓ 🚀", [], {}, [1, [2, {"a": None}]]],
    ids=repr,
)
def test_json_values_round_trip_unchanged(serializer: MsgpackSerializer, value: Any) -> None:
    assert serializer.loads(serializer.dumps(value)) == value


def test_strings_decode_as_str_not_bytes(serializer: MsgpackSerializer) -> None:
    assert isinstance(serializer.loads(serializer.dumps("text")), str)


@pytest.mark.parametrize("value", [b"", b"\x00\xff binary", bytes(range(256))], ids=len)
def test_bytes_stay_bytes(serializer: MsgpackSerializer, value: bytes) -> None:
    assert serializer.loads(serializer.dumps(value)) == value


@pytest.mark.parametrize("wrap", [bytearray, memoryview], ids=["bytearray", "memoryview"])
def test_bytes_like_values_arrive_as_bytes(
    serializer: MsgpackSerializer, wrap: type[bytearray] | type[memoryview]
) -> None:
    assert serializer.loads(serializer.dumps(wrap(b"\x00\x01"))) == b"\x00\x01"


def test_bytes_inside_containers_stay_bytes(serializer: MsgpackSerializer) -> None:
    value = {"image": b"\x89PNG", "parts": [b"\x00", b"\x01"]}

    assert serializer.loads(serializer.dumps(value)) == value


@pytest.mark.parametrize("value", RICH_VALUES.values(), ids=RICH_VALUES.keys())
def test_rich_values_encode_as_the_json_serializer_writes_them(
    serializer: MsgpackSerializer, value: Any
) -> None:
    assert msgpack.unpackb(serializer.dumps(value)) == orjson.loads(JSONSerializer().dumps(value))


@pytest.mark.parametrize("value", RICH_VALUES.values(), ids=RICH_VALUES.keys())
def test_rich_values_decode_as_the_json_serializer_decodes_them(
    serializer: MsgpackSerializer, value: Any
) -> None:
    json = JSONSerializer()

    assert serializer.loads(serializer.dumps(value)) == json.loads(json.dumps(value))


@pytest.mark.parametrize(
    "value",
    [object(), complex(1, 2), dt.timedelta(seconds=1), [1, {"nested": object()}], 2**64],
    ids=["object", "complex", "timedelta", "nested-object", "int-over-64-bits"],
)
def test_an_unencodable_value_is_a_serialization_error(
    serializer: MsgpackSerializer, value: Any
) -> None:
    with pytest.raises(aq.SerializationError):
        serializer.dumps(value)


def test_a_failed_encoding_leaves_the_serializer_usable(serializer: MsgpackSerializer) -> None:
    with pytest.raises(aq.SerializationError):
        serializer.dumps(["partly", "written", object()])

    assert serializer.dumps({"next": 1}) == msgpack.packb({"next": 1})


@pytest.mark.parametrize("value", [{1: "a"}, {"outer": {None: 1, 2.5: [True]}}])
def test_a_map_with_scalar_keys_other_than_str_round_trips(
    serializer: MsgpackSerializer, value: Any
) -> None:
    assert serializer.loads(serializer.dumps(value)) == value


def test_a_map_with_a_tuple_key_is_refused_on_decoding(serializer: MsgpackSerializer) -> None:
    # msgpack writes the tuple as an array, which cannot be a key once read back.
    with pytest.raises(aq.MessageDecodeError, match="not valid msgpack"):
        serializer.loads(serializer.dumps({(1, 2): "tuple"}))


@pytest.mark.parametrize("code", [0, 5, 127, -2])
def test_an_extension_type_is_refused_on_decoding(serializer: MsgpackSerializer, code: int) -> None:
    data = b"\x81\xa5value" + bytes((0xD4, code & 0xFF, 0))  # {"value": fixext 1 of type code}

    with pytest.raises(aq.MessageDecodeError, match=f"extension type {code} is not part of aq"):
        serializer.loads(data)


def test_a_msgpack_timestamp_decodes_as_an_aware_datetime(serializer: MsgpackSerializer) -> None:
    data = msgpack.packb(WHEN, datetime=True)

    assert serializer.loads(data) == WHEN


@pytest.mark.parametrize(
    "data",
    [b"", b"\xc1", b"\x92\x01", b"\xa5abc", b"\xdb\xff\xff\xff\xff", b"\xa2\xff\xfe"],
    ids=["empty", "never-used-byte", "short-array", "short-string", "huge-string", "bad-utf-8"],
)
def test_invalid_bytes_are_a_decode_error(serializer: MsgpackSerializer, data: bytes) -> None:
    with pytest.raises(aq.MessageDecodeError, match="not valid msgpack"):
        serializer.loads(data)


@pytest.mark.parametrize("garbage", [b"\x00", b"\xc1", msgpack.packb({"b": 2})], ids=repr)
def test_bytes_after_the_value_are_a_decode_error(
    serializer: MsgpackSerializer, garbage: bytes
) -> None:
    with pytest.raises(aq.MessageDecodeError, match="not valid msgpack"):
        serializer.loads(msgpack.packb({"a": 1}) + garbage)


def test_nesting_ten_thousand_deep_is_a_decode_error(serializer: MsgpackSerializer) -> None:
    with pytest.raises(aq.MessageDecodeError, match="nested too deep"):
        serializer.loads(b"\x91" * 10_000 + b"\xc0")


def test_a_decode_error_is_not_a_serialization_error(serializer: MsgpackSerializer) -> None:
    with pytest.raises(aq.MessageDecodeError) as caught:
        serializer.loads(b"\xc1")

    assert not isinstance(caught.value, aq.SerializationError)


def test_a_timestamp_out_of_the_range_of_datetimes_is_refused(
    serializer: MsgpackSerializer,
) -> None:
    data = msgpack.packb({"when": msgpack.Timestamp(10**12, 0)})
    with pytest.raises(aq.MessageDecodeError, match="not valid msgpack"):
        serializer.loads(data)


def test_threads_encoding_at_once_each_get_their_own_output(
    serializer: MsgpackSerializer,
) -> None:
    values = [{"ids": [uuid.UUID(int=n * 1000 + i) for i in range(50)]} for n in range(4)]
    expected = [serializer.dumps(v) for v in values]

    def encode(index: int) -> list[bytes]:
        return [serializer.dumps(values[index]) for _ in range(300)]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(encode, range(4)))
    for index, outputs in enumerate(results):
        assert set(outputs) == {expected[index]}

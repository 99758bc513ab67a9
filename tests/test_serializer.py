"""Specification of aq.serializer: the JSON codec between Python values and wire bytes."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import enum
import pathlib
import uuid
from typing import Any

import pydantic
import pytest

import aq
from aq.serializer import JSONSerializer, Serializer


@pytest.fixture
def serializer() -> JSONSerializer:
    return JSONSerializer()


def encode_decode(serializer: JSONSerializer, value: Any) -> Any:
    """What the receiving side sees after ``value`` crosses the wire."""
    return serializer.loads(serializer.dumps(value))


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class User(pydantic.BaseModel):
    id: int
    name: str
    joined: dt.datetime


def test_json_serializer_satisfies_the_serializer_protocol() -> None:
    codec: Serializer = JSONSerializer()

    assert codec.content_type == "application/json"


def test_dumps_returns_bytes(serializer: JSONSerializer) -> None:
    assert isinstance(serializer.dumps({"a": 1}), bytes)


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -17,
        2**63 - 1,
        1.5,
        "",
        "héllo ✓ 🚀",
        [],
        {},
        [1, "two", None, 3.0, [True]],
        {"nested": {"list": [1, {"deep": None}]}, "empty": ""},
    ],
    ids=repr,
)
def test_json_values_round_trip_unchanged(serializer: JSONSerializer, value: Any) -> None:
    assert encode_decode(serializer, value) == value


def test_dataclass_encodes_as_an_object_of_its_fields(serializer: JSONSerializer) -> None:
    assert encode_decode(serializer, Point(1, 2)) == {"x": 1, "y": 2}


def test_aware_datetime_encodes_as_iso_8601_with_offset(serializer: JSONSerializer) -> None:
    value = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)

    assert encode_decode(serializer, value) == "2024-01-02T03:04:05+00:00"


def test_naive_datetime_encodes_as_iso_8601(serializer: JSONSerializer) -> None:
    assert encode_decode(serializer, dt.datetime(2024, 1, 2, 3, 4, 5)) == "2024-01-02T03:04:05"


def test_date_encodes_as_iso_8601(serializer: JSONSerializer) -> None:
    assert encode_decode(serializer, dt.date(2024, 1, 2)) == "2024-01-02"


def test_time_encodes_as_iso_8601(serializer: JSONSerializer) -> None:
    assert encode_decode(serializer, dt.time(3, 4, 5)) == "03:04:05"


def test_uuid_encodes_as_its_canonical_string(serializer: JSONSerializer) -> None:
    value = uuid.UUID("12345678-1234-5678-1234-567812345678")

    assert encode_decode(serializer, value) == "12345678-1234-5678-1234-567812345678"


def test_enum_encodes_as_its_value(serializer: JSONSerializer) -> None:
    assert encode_decode(serializer, Color.RED) == "red"


def test_int_enum_encodes_as_its_integer_value(serializer: JSONSerializer) -> None:
    assert encode_decode(serializer, Level.HIGH) == 2


def test_pydantic_model_encodes_as_its_json_mode_dump(serializer: JSONSerializer) -> None:
    user = User(id=7, name="ada", joined=dt.datetime(2024, 1, 2, tzinfo=dt.UTC))

    assert encode_decode(serializer, user) == user.model_dump(mode="json")


def test_bytes_encode_as_base64_text(serializer: JSONSerializer) -> None:
    value = b"\x00\xffbinary"

    assert encode_decode(serializer, value) == base64.b64encode(value).decode("ascii")


def test_bytearray_encodes_as_base64_text(serializer: JSONSerializer) -> None:
    value = bytearray(b"\x01\x02\x03")

    assert encode_decode(serializer, value) == base64.b64encode(value).decode("ascii")


def test_set_encodes_as_a_list_of_its_members(serializer: JSONSerializer) -> None:
    decoded = encode_decode(serializer, {3, 1, 2})

    assert isinstance(decoded, list)
    assert sorted(decoded) == [1, 2, 3]


def test_frozenset_encodes_as_a_list_of_its_members(serializer: JSONSerializer) -> None:
    assert sorted(encode_decode(serializer, frozenset({"b", "a"}))) == ["a", "b"]


def test_decimal_encodes_as_an_exact_string(serializer: JSONSerializer) -> None:
    assert encode_decode(serializer, decimal.Decimal("1.10")) == "1.10"


def test_path_encodes_as_its_string(serializer: JSONSerializer) -> None:
    assert encode_decode(serializer, pathlib.PurePosixPath("/tmp/data.csv")) == "/tmp/data.csv"


def test_rich_values_nested_in_containers_are_encoded(serializer: JSONSerializer) -> None:
    value = {"when": [dt.date(2024, 1, 2)], "amount": decimal.Decimal("2.5"), "raw": b"hi"}

    assert encode_decode(serializer, value) == {
        "when": ["2024-01-02"],
        "amount": "2.5",
        "raw": "aGk=",
    }


@pytest.mark.parametrize(
    "value",
    [object(), lambda: None, Point, [1, object()], {"key": object()}],
    ids=["object", "lambda", "class", "nested-in-list", "nested-in-dict"],
)
def test_non_serialisable_value_raises_serialization_error(
    serializer: JSONSerializer, value: Any
) -> None:
    with pytest.raises(aq.SerializationError):
        serializer.dumps(value)


def test_serialization_error_names_the_offending_type(serializer: JSONSerializer) -> None:
    with pytest.raises(aq.SerializationError, match="object"):
        serializer.dumps(object())


def test_serialization_error_is_a_type_error(serializer: JSONSerializer) -> None:
    with pytest.raises(TypeError):
        serializer.dumps(object())


@pytest.mark.parametrize(
    "data",
    [b"", b"{not json", b'{"a": 1', b"\xff\xfe\x00", b"[1, 2,]", b"NaN"],
    ids=repr,
)
def test_invalid_bytes_raise_message_decode_error(serializer: JSONSerializer, data: bytes) -> None:
    with pytest.raises(aq.MessageDecodeError, match="not valid JSON"):
        serializer.loads(data)


def test_message_decode_error_is_a_value_error(serializer: JSONSerializer) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the base class is the point
        serializer.loads(b"{")

"""Specification of aq.coerce: turning decoded JSON back into the types a task declares."""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime as dt
import decimal
import enum
import inspect
import pathlib
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Any, Literal, Optional

import pydantic
import pytest

import aq
from aq.coerce import ArgumentConverter, converter_for, return_converter
from aq.serializer import JSONSerializer

WHEN = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
WHEN_ISO = "2024-01-02T03:04:05+00:00"
ID = uuid.UUID("12345678-1234-5678-1234-567812345678")


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclasses.dataclass
class Event:
    name: str
    at: dt.datetime


@dataclasses.dataclass
class Schedule:
    owner: str
    events: list[Event]
    first: Event


@dataclasses.dataclass
class Node:
    name: str
    children: list[Node] = dataclasses.field(default_factory=list)


class User(pydantic.BaseModel):
    id: int
    joined: dt.datetime


def convert(tp: Any, value: Any) -> Any:
    """Convert ``value`` with the converter for ``tp``, which must exist."""
    converter = converter_for(tp)
    assert converter is not None, f"expected a converter for {tp!r}"
    return converter(value)


# --- converter_for: types JSON already represents ------------------------------------------


@pytest.mark.parametrize(
    "tp",
    [
        int,
        str,
        bool,
        None,
        type(None),
        Any,
        object,
        list,
        dict,
        list[int],
        list[str],
        list[Any],
        dict[str, int],
        dict[str, Any],
        Optional[int],  # noqa: UP045 - the typing.Optional spelling is what is under test
        int | None,
        Literal["a", "b"],
        inspect.Parameter.empty,
    ],
    ids=repr,
)
def test_plain_json_types_need_no_converter(tp: Any) -> None:
    assert converter_for(tp) is None


def test_ambiguous_union_is_passed_through_as_json() -> None:
    assert converter_for(int | dt.datetime) is None


# --- converter_for: scalars from their JSON forms --------------------------------------------


@pytest.mark.parametrize(
    ("tp", "wire", "expected"),
    [
        (dt.datetime, WHEN_ISO, WHEN),
        (dt.datetime, "2024-01-02T03:04:05", dt.datetime(2024, 1, 2, 3, 4, 5)),
        (dt.date, "2024-01-02", dt.date(2024, 1, 2)),
        (dt.time, "03:04:05", dt.time(3, 4, 5)),
        (uuid.UUID, str(ID), ID),
        (uuid.UUID, ID.hex, ID),
        (decimal.Decimal, "1.10", decimal.Decimal("1.10")),
        (bytes, "AP9oaQ==", b"\x00\xffhi"),
        (pathlib.Path, "/tmp/data.csv", pathlib.Path("/tmp/data.csv")),
    ],
    ids=repr,
)
def test_scalar_is_converted_from_its_json_form(tp: Any, wire: Any, expected: Any) -> None:
    result = convert(tp, wire)

    assert type(result) is type(expected)
    assert result == expected


def test_decimal_keeps_its_exact_digits() -> None:
    assert str(convert(decimal.Decimal, "1.10")) == "1.10"


@pytest.mark.parametrize(
    ("tp", "value"),
    [
        (dt.datetime, WHEN),
        (dt.date, dt.date(2024, 1, 2)),
        (dt.time, dt.time(3, 4, 5)),
        (uuid.UUID, ID),
        (decimal.Decimal, decimal.Decimal("3.5")),
        (bytes, b"raw"),
        (pathlib.Path, pathlib.Path("/x")),
    ],
    ids=repr,
)
def test_value_already_of_the_type_is_returned_as_is(tp: Any, value: Any) -> None:
    assert convert(tp, value) is value


def test_float_is_converted_from_int() -> None:
    result = convert(float, 3)

    assert type(result) is float
    assert result == 3.0


def test_float_is_left_unchanged() -> None:
    assert convert(float, 2.5) == 2.5


@pytest.mark.parametrize(
    "tp",
    [Optional[dt.datetime], dt.datetime | None],  # noqa: UP045 - both spellings are under test
    ids=["typing.Optional", "pep604"],
)
def test_optional_converts_a_present_value(tp: Any) -> None:
    assert convert(tp, WHEN_ISO) == WHEN


@pytest.mark.parametrize(
    "tp",
    [Optional[dt.datetime], dt.datetime | None],  # noqa: UP045 - both spellings are under test
    ids=["typing.Optional", "pep604"],
)
def test_optional_passes_none_through(tp: Any) -> None:
    assert convert(tp, None) is None


def test_annotated_converts_as_its_underlying_type() -> None:
    assert convert(Annotated[dt.datetime, "meta"], WHEN_ISO) == WHEN


# --- converter_for: containers ---------------------------------------------------------------


def test_list_converts_each_item() -> None:
    assert convert(list[dt.date], ["2024-01-02", "2024-01-03"]) == [
        dt.date(2024, 1, 2),
        dt.date(2024, 1, 3),
    ]


def test_nested_list_converts_each_inner_item() -> None:
    assert convert(list[list[uuid.UUID]], [[str(ID)], []]) == [[ID], []]


def test_sequence_converts_to_a_list_of_items() -> None:
    assert convert(collections.abc.Sequence[dt.date], ["2024-01-02"]) == [dt.date(2024, 1, 2)]


def test_set_of_plain_items_becomes_a_set() -> None:
    result = convert(set[int], [1, 2, 2, 3])

    assert result == {1, 2, 3}
    assert isinstance(result, set)


def test_set_converts_each_item() -> None:
    assert convert(set[uuid.UUID], [str(ID)]) == {ID}


def test_frozenset_of_plain_items_becomes_a_frozenset() -> None:
    assert convert(frozenset[str], ["a", "b"]) == frozenset({"a", "b"})


def test_bare_set_annotation_becomes_a_set() -> None:
    assert convert(set, [1, 2]) == {1, 2}


def test_variadic_tuple_of_plain_items_becomes_a_tuple() -> None:
    assert convert(tuple[int, ...], [1, 2, 3]) == (1, 2, 3)


def test_variadic_tuple_converts_each_item() -> None:
    assert convert(tuple[dt.date, ...], ["2024-01-02"]) == (dt.date(2024, 1, 2),)


def test_fixed_tuple_of_plain_items_becomes_a_tuple() -> None:
    assert convert(tuple[int, str], [1, "a"]) == (1, "a")


def test_fixed_tuple_converts_each_position_by_its_own_type() -> None:
    assert convert(tuple[int, dt.datetime, uuid.UUID], [1, WHEN_ISO, str(ID)]) == (1, WHEN, ID)


def test_dict_converts_values() -> None:
    assert convert(dict[str, dt.datetime], {"start": WHEN_ISO}) == {"start": WHEN}


def test_dict_converts_keys() -> None:
    assert convert(dict[uuid.UUID, int], {str(ID): 1}) == {ID: 1}


def test_mapping_converts_values() -> None:
    assert convert(collections.abc.Mapping[str, dt.datetime], {"start": WHEN_ISO}) == {
        "start": WHEN
    }


# --- converter_for: classes -------------------------------------------------------------------


def test_enum_is_converted_from_its_value() -> None:
    assert convert(Color, "red") is Color.RED


def test_int_enum_is_converted_from_its_value() -> None:
    assert convert(Level, 2) is Level.HIGH


def test_dataclass_is_built_from_an_object_converting_its_fields() -> None:
    assert convert(Event, {"name": "launch", "at": WHEN_ISO}) == Event("launch", WHEN)


def test_nested_dataclass_is_built_recursively() -> None:
    wire = {
        "owner": "ada",
        "events": [{"name": "a", "at": WHEN_ISO}],
        "first": {"name": "b", "at": WHEN_ISO},
    }

    assert convert(Schedule, wire) == Schedule("ada", [Event("a", WHEN)], Event("b", WHEN))


def test_dataclass_instance_is_returned_as_is() -> None:
    event = Event("launch", WHEN)

    assert convert(Event, event) is event


def test_self_referential_dataclass_is_built_recursively() -> None:
    wire = {"name": "root", "children": [{"name": "leaf", "children": []}]}

    assert convert(Node, wire) == Node("root", [Node("leaf")])


def test_pydantic_model_is_validated_from_an_object() -> None:
    assert convert(User, {"id": 1, "joined": WHEN_ISO}) == User(id=1, joined=WHEN)


@pytest.mark.parametrize(
    ("tp", "value"),
    [
        (dt.datetime, WHEN),
        (dt.date, dt.date(2024, 1, 2)),
        (dt.time, dt.time(3, 4, 5)),
        (uuid.UUID, ID),
        (decimal.Decimal, decimal.Decimal("1.10")),
        (bytes, b"\x00\xff"),
        (pathlib.Path, pathlib.Path("/tmp/x")),
        (Color, Color.GREEN),
        (Event, Event("launch", WHEN)),
        (User, User(id=1, joined=WHEN)),
        (set[uuid.UUID], {ID}),
        (tuple[int, dt.date], (1, dt.date(2024, 1, 2))),
        (dict[str, list[dt.time]], {"slots": [dt.time(9), dt.time(17, 30)]}),
        (dt.datetime | None, None),
    ],
    ids=repr,
)
def test_value_survives_a_trip_through_the_json_serializer(tp: Any, value: Any) -> None:
    codec = JSONSerializer()

    assert convert(tp, codec.loads(codec.dumps(value))) == value


# --- ArgumentConverter ------------------------------------------------------------------------


def test_argument_converter_converts_positional_args_by_annotation() -> None:
    def fn(when: dt.datetime, count: int, day: dt.date) -> None: ...

    args, kwargs = ArgumentConverter(fn)([WHEN_ISO, 3, "2024-01-02"], {})

    assert args == [WHEN, 3, dt.date(2024, 1, 2)]
    assert kwargs == {}


def test_argument_converter_converts_keyword_args_by_annotation() -> None:
    def fn(when: dt.datetime, *, key: uuid.UUID, label: str) -> None: ...

    args, kwargs = ArgumentConverter(fn)([], {"when": WHEN_ISO, "key": str(ID), "label": "x"})

    assert args == []
    assert kwargs == {"when": WHEN, "key": ID, "label": "x"}


def test_argument_converter_converts_mixed_positional_and_keyword_args() -> None:
    def fn(when: dt.datetime, /, user: User, *, color: Color) -> None: ...

    args, kwargs = ArgumentConverter(fn)(
        [WHEN_ISO], {"user": {"id": 1, "joined": WHEN_ISO}, "color": "red"}
    )

    assert args == [WHEN]
    assert kwargs == {"user": User(id=1, joined=WHEN), "color": Color.RED}


def test_argument_converter_applies_star_args_annotation_to_extra_positionals() -> None:
    def fn(count: int, *days: dt.date) -> None: ...

    args, _ = ArgumentConverter(fn)([2, "2024-01-02", "2024-01-03"], {})

    assert args == [2, dt.date(2024, 1, 2), dt.date(2024, 1, 3)]


def test_argument_converter_applies_star_star_kwargs_annotation_to_extra_keywords() -> None:
    def fn(name: str, **times: dt.datetime) -> None: ...

    _, kwargs = ArgumentConverter(fn)([], {"name": "n", "start": WHEN_ISO, "end": WHEN_ISO})

    assert kwargs == {"name": "n", "start": WHEN, "end": WHEN}


def test_argument_converter_leaves_unannotated_params_alone() -> None:
    def fn(raw, when: dt.datetime):  # type: ignore[no-untyped-def]
        ...

    args, _ = ArgumentConverter(fn)(["2024-01-02", WHEN_ISO], {})

    assert args == ["2024-01-02", WHEN]


def test_argument_converter_is_needed_when_a_param_needs_converting() -> None:
    def fn(count: int, when: dt.datetime) -> None: ...

    assert ArgumentConverter(fn).needed is True


def test_argument_converter_is_needed_when_only_star_args_need_converting() -> None:
    def fn(*whens: dt.datetime) -> None: ...

    assert ArgumentConverter(fn).needed is True


def test_argument_converter_is_needed_when_only_star_star_kwargs_need_converting() -> None:
    def fn(**whens: dt.datetime) -> None: ...

    assert ArgumentConverter(fn).needed is True


def test_argument_converter_is_not_needed_for_plain_json_params() -> None:
    def fn(a: int, b: str, c: list[int], *rest: bool, **extra: dict[str, Any]) -> None: ...

    assert ArgumentConverter(fn).needed is False


def test_argument_converter_is_not_needed_for_unannotated_params() -> None:
    def fn(a, *args, **kwargs):  # type: ignore[no-untyped-def]
        ...

    assert ArgumentConverter(fn).needed is False


def test_argument_converter_returns_inputs_untouched_when_not_needed() -> None:
    def fn(a: int, b: str) -> None: ...

    args: list[Any] = [1, "x"]
    kwargs: dict[str, Any] = {}

    new_args, new_kwargs = ArgumentConverter(fn)(args, kwargs)

    assert new_args is args
    assert new_kwargs is kwargs


def _typed(when: dt.datetime, key: uuid.UUID, color: Color, user: User, event: Event) -> None: ...


_TYPED_ARGS = {
    "when": WHEN_ISO,
    "key": str(ID),
    "color": "red",
    "user": {"id": 1, "joined": WHEN_ISO},
    "event": {"name": "launch", "at": WHEN_ISO},
}


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("when", "not-a-date"),
        ("key", "not-a-uuid"),
        ("color", "purple"),
        ("user", {"id": 1}),
        ("event", "not-an-object"),
    ],
)
def test_argument_converter_raises_serialization_error_on_a_bad_value(
    param: str, value: Any
) -> None:
    with pytest.raises(aq.SerializationError, match=rf"argument '{param}(\.\w+)?' of _typed\(\)"):
        ArgumentConverter(_typed)([], {**_TYPED_ARGS, param: value})


def test_argument_converter_raises_serialization_error_on_a_bad_positional_value() -> None:
    def fn(when: dt.datetime) -> None: ...

    with pytest.raises(aq.SerializationError):
        ArgumentConverter(fn)(["not-a-date"], {})


def test_argument_converter_raises_serialization_error_on_a_bad_decimal() -> None:
    def fn(amount: decimal.Decimal) -> None: ...

    with pytest.raises(aq.SerializationError):
        ArgumentConverter(fn)(["abc"], {})


# --- return_converter -------------------------------------------------------------------------


def test_return_converter_converts_a_coroutine_functions_return_type() -> None:
    async def fn() -> dt.datetime:
        return WHEN

    converter = return_converter(fn)

    assert converter is not None
    assert converter(WHEN_ISO) == WHEN


def test_return_converter_converts_a_plain_functions_return_type() -> None:
    def fn() -> list[uuid.UUID]:
        return [ID]

    converter = return_converter(fn)

    assert converter is not None
    assert converter([str(ID)]) == [ID]


def test_return_converter_unwraps_async_iterator_item_type() -> None:
    async def fn() -> AsyncIterator[dt.date]:
        yield dt.date(2024, 1, 2)

    converter = return_converter(fn)

    assert converter is not None
    assert converter("2024-01-02") == dt.date(2024, 1, 2)


def test_return_converter_unwraps_async_generator_item_type() -> None:
    async def fn() -> AsyncGenerator[Event, None]:
        yield Event("e", WHEN)

    converter = return_converter(fn)

    assert converter is not None
    assert converter({"name": "e", "at": WHEN_ISO}) == Event("e", WHEN)


def test_return_converter_is_none_for_an_async_iterator_of_plain_items() -> None:
    async def fn() -> AsyncIterator[int]:
        yield 1

    assert return_converter(fn) is None


def test_return_converter_is_none_for_a_plain_return_type() -> None:
    async def fn() -> dict[str, int]:
        return {}

    assert return_converter(fn) is None


def test_return_converter_is_none_without_a_return_annotation() -> None:
    async def fn():  # type: ignore[no-untyped-def]
        return None

    assert return_converter(fn) is None


def test_return_converter_is_none_for_an_unresolvable_annotation() -> None:
    def fn() -> None: ...

    fn.__annotations__ = {"return": "NoSuchType"}

    assert return_converter(fn) is None

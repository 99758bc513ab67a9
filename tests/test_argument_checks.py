"""Specification of argument checks: a worker runs a task only with arguments that fit it.

Every argument of a task message is checked against the task's signature and
annotations before the task runs (aq.coerce.ArgumentConverter, with the
checkers of aq.checks). A call that does not fit raises aq.SerializationError
naming the argument, the type expected and what was sent; the worker
dead-letters such a message without retrying it.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime as dt
import decimal
import enum
import logging
import pathlib
import uuid
from collections.abc import Callable
from typing import Annotated, Any, Literal, NewType, NotRequired, Optional, TypedDict

import pydantic
import pytest

import aq
from aq.coerce import ArgumentConverter

WHEN = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
WHEN_ISO = "2024-01-02T03:04:05+00:00"
ID = uuid.UUID("12345678-1234-5678-1234-567812345678")
UserId = NewType("UserId", int)


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Size(enum.Enum):
    SMALL = "small"
    LARGE = "large"

    @classmethod
    def _missing_(cls, value: object) -> Size | None:
        return cls(value.lower()) if isinstance(value, str) and value != value.lower() else None


class Permission(enum.IntFlag):
    READ = 4
    WRITE = 2


@dataclasses.dataclass
class Address:
    zip: str
    city: str = "Paris"


@dataclasses.dataclass
class Person:
    name: str
    address: Address


@dataclasses.dataclass
class Reading:
    sensor: str
    at: dt.datetime
    value: float
    tags: list[str]
    unit: str = "C"


@dataclasses.dataclass
class Node:
    name: str
    children: list[Node] = dataclasses.field(default_factory=list)


class Account(pydantic.BaseModel):
    id: int
    opened: dt.datetime


class Movie(TypedDict):
    title: str
    year: int
    released: NotRequired[dt.date]


def task_of(tp: Any) -> Callable[..., None]:
    """A task ``work(value)`` whose one parameter is annotated ``tp``."""

    def work(value: Any) -> None: ...

    work.__annotations__ = {"value": tp, "return": None}
    return work


def accepted(tp: Any, value: Any) -> Any:
    """What ``work(value: tp)`` receives when sent ``value``."""
    args, _ = ArgumentConverter(task_of(tp))([value], {})
    return args[0]


def rejection(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
    """The message of the error raised when ``fn`` is sent ``args`` and ``kwargs``."""
    with pytest.raises(aq.SerializationError) as info:
        ArgumentConverter(fn)(list(args), kwargs)
    return str(info.value)


def deeply_nested(depth: int) -> list[Any]:
    """A list nested ``depth`` levels deep: [[[...]]]."""
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


# --- scalars -----------------------------------------------------------------------------------


async def work(i: int) -> None: ...


def test_a_string_for_an_int_is_rejected_naming_the_argument_and_both_types() -> None:
    assert rejection(work, "minus twenty-nine") == (
        "argument 'i' of work(): expected int, got str ('minus twenty-nine')"
    )


@pytest.mark.parametrize(
    ("tp", "value", "got"),
    [
        (int, True, "bool (True)"),
        (int, "1", "str ('1')"),
        (int, 1.0, "float (1.0)"),
        (int, None, "None"),
        (float, True, "bool (True)"),
        (float, "1.5", "str ('1.5')"),
        (float, None, "None"),
        (str, 1, "int (1)"),
        (str, None, "None"),
        (bool, 1, "int (1)"),
        (bool, "true", "str ('true')"),
        (None, 0, "int (0)"),
        (None, "", "str ('')"),
    ],
    ids=repr,
)
def test_a_value_of_another_json_type_is_rejected(tp: Any, value: Any, got: str) -> None:
    expected = "None" if tp is None else tp.__name__

    assert rejection(task_of(tp), value).endswith(f"expected {expected}, got {got}")


@pytest.mark.parametrize(
    ("tp", "value"),
    [(int, 7), (str, "seven"), (bool, False), (float, 7.5), (None, None)],
    ids=repr,
)
def test_a_value_of_the_declared_json_type_is_passed_as_it_is(tp: Any, value: Any) -> None:
    assert accepted(tp, value) is value


def test_an_int_for_a_float_arrives_as_a_float() -> None:
    result = accepted(float, 3)

    assert type(result) is float
    assert result == 3.0


def test_an_int_enum_member_for_an_int_is_accepted() -> None:
    assert accepted(int, Level.HIGH) is Level.HIGH


def test_a_long_value_is_cut_short_in_the_message() -> None:
    message = rejection(work, "x" * 100_000)

    assert len(message) < 120
    assert "..." in message


def test_a_deeply_nested_value_is_rejected_without_printing_it_in_full() -> None:
    message = rejection(task_of(float), deeply_nested(1000))

    assert message == "argument 'value' of work(): expected float, got list ([[[[...]]]])"


@pytest.mark.parametrize("tp", [Any, object, list, list[Any]], ids=repr)
def test_a_deeply_nested_value_is_accepted_as_it_is_where_anything_goes(tp: Any) -> None:
    value = deeply_nested(1000)

    assert accepted(tp, value) is value


def test_an_unannotated_parameter_accepts_anything() -> None:
    def work(raw, count: int):  # type: ignore[no-untyped-def]
        ...

    args, _ = ArgumentConverter(work)([{"any": ["thing"]}, 1], {})

    assert args == [{"any": ["thing"]}, 1]


# --- values sent as strings ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("tp", "wire", "expected"),
    [
        (dt.datetime, WHEN_ISO, WHEN),
        (dt.date, "2024-01-02", dt.date(2024, 1, 2)),
        (dt.time, "03:04:05", dt.time(3, 4, 5)),
        (uuid.UUID, str(ID), ID),
        (decimal.Decimal, "1.10", decimal.Decimal("1.10")),
        (pathlib.Path, "/srv/data.csv", pathlib.Path("/srv/data.csv")),
        (bytes, "AP9oaQ==", b"\x00\xffhi"),
    ],
    ids=repr,
)
def test_a_string_form_is_parsed_into_the_declared_type(tp: Any, wire: str, expected: Any) -> None:
    result = accepted(tp, wire)

    assert type(result) is type(expected)
    assert result == expected


@pytest.mark.parametrize(
    ("tp", "value"),
    [
        (dt.datetime, 1_700_000_000),
        (dt.date, None),
        (dt.time, 3.5),
        (uuid.UUID, 5),
        (decimal.Decimal, 1.5),
        (pathlib.Path, ["srv", "data.csv"]),
        (bytes, [0, 255]),
    ],
    ids=repr,
)
def test_a_value_that_is_not_a_string_is_rejected_for_a_parsed_type(tp: Any, value: Any) -> None:
    assert f"expected {tp.__name__}, got" in rejection(task_of(tp), value)


@pytest.mark.parametrize(
    ("tp", "wire"),
    [
        (dt.datetime, "tomorrow"),
        (dt.date, "2024-13-01"),
        (dt.time, "25:00"),
        (uuid.UUID, "not-a-uuid"),
        (decimal.Decimal, "twelve"),
        (bytes, "not base64!"),
    ],
    ids=repr,
)
def test_a_string_that_does_not_parse_is_rejected(tp: Any, wire: str) -> None:
    assert rejection(task_of(tp), wire).endswith(f"expected {tp.__name__}, got str ({wire!r})")


# --- containers -----------------------------------------------------------------------------


def test_each_item_of_a_list_is_checked_and_the_message_points_at_the_wrong_one() -> None:
    def work(items: list[int]) -> None: ...

    assert rejection(work, [1, 2, 3, "x"]) == (
        "argument 'items[3]' of work(): expected int, got str ('x')"
    )


def test_a_list_of_plain_items_is_passed_as_it_is() -> None:
    items = [1, 2, 3]

    assert accepted(list[int], items) is items


def test_a_list_of_floats_turns_ints_into_floats() -> None:
    result = accepted(list[float], [1, 2.5])

    assert result == [1.0, 2.5]
    assert [type(v) for v in result] == [float, float]


@pytest.mark.parametrize(
    "tp", [list[int], set[str], tuple[int, ...], collections.abc.Sequence[str]], ids=repr
)
@pytest.mark.parametrize("value", [{"a": 1}, "abc", 1], ids=repr)
def test_an_array_annotation_rejects_a_value_that_is_not_an_array(tp: Any, value: Any) -> None:
    assert "got" in rejection(task_of(tp), value)


def test_a_deeply_nested_value_is_rejected_at_the_first_level_that_does_not_fit() -> None:
    message = rejection(task_of(list[list[list[float]]]), deeply_nested(1000))

    assert message.startswith("argument 'value[0][0][0]' of work(): expected float, got list")


def test_each_item_of_a_set_is_checked() -> None:
    assert "'value[1]'" in rejection(task_of(set[str]), ["a", 2])


def test_a_set_arrives_as_a_set_of_its_distinct_items() -> None:
    assert accepted(set[str], ["a", "b", "a"]) == {"a", "b"}


def test_each_item_of_a_variadic_tuple_is_checked() -> None:
    assert "'value[2]'" in rejection(task_of(tuple[int, ...]), [1, 2, "3"])


def test_each_position_of_a_fixed_tuple_is_checked_against_its_own_type() -> None:
    assert rejection(task_of(tuple[int, str]), ["1", "a"]).endswith(
        "'value[0]' of work(): expected int, got str ('1')"
    )


@pytest.mark.parametrize("value", [[1], [1, "a", 2]], ids=repr)
def test_a_fixed_tuple_of_the_wrong_length_is_rejected(value: list[Any]) -> None:
    assert "expected tuple[int, str] (2 items)" in rejection(task_of(tuple[int, str]), value)


def test_a_fixed_tuple_arrives_as_a_tuple() -> None:
    assert accepted(tuple[int, dt.date], [1, "2024-01-02"]) == (1, dt.date(2024, 1, 2))


def test_each_value_of_a_dict_is_checked_and_the_message_names_its_key() -> None:
    def work(prices: dict[str, float]) -> None: ...

    assert rejection(work, {"apple": 1.5, "pear": "cheap"}) == (
        "argument \"prices['pear']\" of work(): expected float, got str ('cheap')"
    )


def test_the_values_of_a_dict_of_floats_arrive_as_floats() -> None:
    assert accepted(dict[str, float], {"a": 1}) == {"a": 1.0}


def test_each_key_of_a_dict_is_checked() -> None:
    assert rejection(task_of(dict[uuid.UUID, int]), {"nope": 1}).endswith(
        "expected key of type UUID, got str ('nope')"
    )


def test_a_mapping_is_checked_like_a_dict() -> None:
    assert rejection(task_of(collections.abc.Mapping[str, int]), {"a": 1, "b": "2"}).endswith(
        "\"value['b']\" of work(): expected int, got str ('2')"
    )


def test_a_sequence_rejects_a_string() -> None:
    assert "expected Sequence[str], got str" in rejection(
        task_of(collections.abc.Sequence[str]), "abc"
    )


@pytest.mark.parametrize(
    ("tp", "good"), [(list, [1, "a"]), (dict, {"a": [1]}), (tuple, [1, "a"]), (set, [1])], ids=repr
)
def test_a_bare_container_annotation_checks_only_the_container(tp: type, good: Any) -> None:
    assert accepted(tp, good) == tp(good)


@pytest.mark.parametrize(
    ("tp", "bad"), [(list, {"a": 1}), (dict, [1]), (tuple, "ab"), (set, 1)], ids=repr
)
def test_a_bare_container_annotation_rejects_another_kind_of_value(tp: type, bad: Any) -> None:
    assert f"expected {tp.__name__}, got" in rejection(task_of(tp), bad)


# --- unions ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tp",
    [Optional[int], int | None],  # noqa: UP045 - both spellings are under test
    ids=["typing.Optional", "pep604"],
)
def test_an_optional_accepts_none_and_a_value_of_its_type(tp: Any) -> None:
    assert accepted(tp, None) is None
    assert accepted(tp, 3) == 3


@pytest.mark.parametrize(
    "tp",
    [Optional[int], int | None],  # noqa: UP045 - both spellings are under test
    ids=["typing.Optional", "pep604"],
)
def test_an_optional_rejects_anything_else_naming_the_union(tp: Any) -> None:
    assert rejection(task_of(tp), "3").endswith("expected int | None, got str ('3')")


def test_an_optional_converts_a_present_value() -> None:
    assert accepted(dt.datetime | None, WHEN_ISO) == WHEN


@pytest.mark.parametrize("tp", [int | float, float | int], ids=repr)
def test_a_union_keeps_a_value_that_one_member_takes_as_it_is(tp: Any) -> None:
    assert type(accepted(tp, 3)) is int
    assert type(accepted(tp, 3.5)) is float


def test_a_union_of_str_and_datetime_keeps_a_string_a_string() -> None:
    assert accepted(dt.datetime | str, WHEN_ISO) == WHEN_ISO


def test_a_union_converts_with_the_first_member_that_accepts() -> None:
    assert accepted(int | dt.datetime, WHEN_ISO) == WHEN


def test_a_value_no_member_of_a_union_accepts_is_rejected_naming_the_union() -> None:
    assert rejection(task_of(int | str), 1.5).endswith("expected int | str, got float (1.5)")


def test_a_union_reports_the_inner_mismatch_of_the_one_member_with_the_right_shape() -> None:
    assert rejection(task_of(list[int] | None), [1, "x"]).endswith(
        "'value[1]' of work(): expected int, got str ('x')"
    )


# --- literals, enums, annotated, new types ------------------------------------------------------


def test_a_literal_accepts_one_of_its_values() -> None:
    assert accepted(Literal["low", "high"], "high") == "high"


def test_a_literal_rejects_any_other_value() -> None:
    assert rejection(task_of(Literal["low", "high"]), "medium").endswith(
        "expected Literal['low', 'high'], got str ('medium')"
    )


@pytest.mark.parametrize(("tp", "value"), [(Literal[1], True), (Literal[True], 1)], ids=repr)
def test_a_literal_tells_bool_from_int(tp: Any, value: Any) -> None:
    assert "expected Literal" in rejection(task_of(tp), value)


def test_annotated_is_checked_as_its_underlying_type() -> None:
    assert "expected int, got str" in rejection(task_of(Annotated[int, "meta"]), "1")


def test_a_new_type_is_checked_as_its_supertype() -> None:
    assert "expected int, got str" in rejection(task_of(UserId), "5")


def test_an_enum_is_found_by_its_value() -> None:
    assert accepted(Color, "green") is Color.GREEN


def test_an_enum_rejects_a_value_none_of_its_members_has() -> None:
    assert rejection(task_of(Color), "purple").endswith(
        "expected Color ('red', 'green'), got str ('purple')"
    )


def test_an_int_enum_rejects_a_bool() -> None:
    assert "expected Level (1, 2), got bool (True)" in rejection(task_of(Level), True)


def test_an_enums_own_lookup_is_honoured() -> None:
    assert accepted(Size, "LARGE") is Size.LARGE


def test_a_flag_accepts_a_combination_of_its_members() -> None:
    assert accepted(Permission, 6) == Permission.READ | Permission.WRITE


# --- dataclasses, pydantic models, TypedDicts ---------------------------------------------------


def test_a_dataclass_is_built_checking_its_fields_recursively() -> None:
    assert accepted(Person, {"name": "Ada", "address": {"zip": "75001"}}) == Person(
        "Ada", Address("75001")
    )


def test_a_nested_field_that_does_not_fit_is_named_by_its_path() -> None:
    def work(user: Person) -> None: ...

    assert rejection(work, {"name": "Ada", "address": {"zip": 75001}}) == (
        "argument 'user.address.zip' of work(): expected str, got int (75001)"
    )


def test_a_dataclass_rejects_an_unknown_field() -> None:
    assert rejection(task_of(Address), {"zip": "1", "country": "FR"}).endswith(
        "'value.country' of work(): expected one of Address's fields (zip, city), got str ('FR')"
    )


def test_a_dataclass_rejects_a_missing_field() -> None:
    assert rejection(task_of(Address), {"city": "Lyon"}).endswith(
        "'value.zip' of work(): expected str, got nothing (missing)"
    )


@pytest.mark.parametrize("value", [["Ada"], "Ada", None], ids=repr)
def test_a_dataclass_must_be_sent_as_an_object(value: Any) -> None:
    assert "expected Address (an object), got" in rejection(task_of(Address), value)


def test_a_self_referential_dataclass_is_checked_at_every_level() -> None:
    tree = {"name": "root", "children": [{"name": "leaf", "children": [{"name": 3}]}]}

    assert "'value.children[0].children[0].name'" in rejection(task_of(Node), tree)


def test_a_self_referential_dataclass_too_deep_to_check_is_rejected() -> None:
    tree: dict[str, Any] = {"name": "leaf"}
    for _ in range(1000):
        tree = {"name": "branch", "children": [tree]}

    assert rejection(task_of(Node), tree) == (
        "argument 'value' of work(): nested too deeply to check"
    )


def test_a_pydantic_model_is_validated_by_pydantic() -> None:
    assert accepted(Account, {"id": 1, "opened": WHEN_ISO}) == Account(id=1, opened=WHEN)


def test_a_pydantic_validation_error_names_the_field() -> None:
    message = rejection(task_of(Account), {"id": [1], "opened": WHEN_ISO})

    assert message.startswith("argument 'value.id' of work(): expected Account (")
    assert message.endswith("got list ([1])")


def test_a_typed_dict_arrives_as_a_dict_with_its_declared_keys_converted() -> None:
    assert accepted(Movie, {"title": "Ran", "year": 1985, "released": "1985-06-01"}) == {
        "title": "Ran",
        "year": 1985,
        "released": dt.date(1985, 6, 1),
    }


def test_a_typed_dict_key_with_a_value_of_the_wrong_type_is_rejected() -> None:
    assert rejection(task_of(Movie), {"title": "Ran", "year": "1985"}).endswith(
        "\"value['year']\" of work(): expected int, got str ('1985')"
    )


def test_a_typed_dict_rejects_a_missing_required_key() -> None:
    assert "got nothing (missing)" in rejection(task_of(Movie), {"title": "Ran"})


def test_a_typed_dict_rejects_an_unknown_key() -> None:
    assert "expected one of Movie's fields" in rejection(
        task_of(Movie), {"title": "Ran", "year": 1985, "rating": 5}
    )


def test_a_class_json_cannot_produce_is_rejected() -> None:
    class Opaque: ...

    assert "expected Opaque, got dict" in rejection(task_of(Opaque), {})


# --- arity --------------------------------------------------------------------------------------


def add(x: int, y: int = 0, *, scale: int = 1) -> None: ...


def test_a_missing_required_argument_is_rejected() -> None:
    assert rejection(add) == "argument 'x' of add(): expected int, got nothing (missing)"


def test_too_many_positional_arguments_are_rejected() -> None:
    assert rejection(add, 1, 2, 3) == "add() takes at most 2 positional argument(s), got 3"


def test_an_unexpected_keyword_argument_is_rejected() -> None:
    assert rejection(add, 1, factor=2) == "add() got an unexpected keyword argument 'factor'"


def test_an_argument_given_by_position_and_by_name_is_rejected() -> None:
    assert rejection(add, 1, x=2) == "add() got multiple values for argument 'x'"


def test_a_positional_only_argument_given_by_name_is_rejected() -> None:
    def work(x: int, /) -> None: ...

    assert rejection(work, x=1) == "work() got positional-only argument 'x' by name"


def test_a_missing_keyword_only_argument_is_rejected() -> None:
    def work(*, key: str) -> None: ...

    assert rejection(work) == "argument 'key' of work(): expected str, got nothing (missing)"


def test_arguments_with_defaults_may_be_left_out() -> None:
    assert ArgumentConverter(add)([1], {}) == ([1], {})


def test_keyword_arguments_are_checked_by_their_parameters_annotation() -> None:
    assert rejection(add, 1, scale="2") == (
        "argument 'scale' of add(): expected int, got str ('2')"
    )


def test_an_annotated_keyword_only_argument_is_checked_beside_unannotated_ones() -> None:
    def work(a, b, *, key: int) -> None: ...  # type: ignore[no-untyped-def]

    assert rejection(work, 1, 2, key="k") == (
        "argument 'key' of work(): expected int, got str ('k')"
    )


def test_each_extra_positional_argument_is_checked_against_star_args() -> None:
    def work(first: str, *rest: int) -> None: ...

    assert rejection(work, "a", 1, "2") == (
        "argument 'rest[1]' of work(): expected int, got str ('2')"
    )


def test_each_extra_keyword_argument_is_checked_against_star_star_kwargs() -> None:
    def work(**limits: int) -> None: ...

    assert rejection(work, cpu=2, memory="lots") == (
        "argument 'memory' of work(): expected int, got str ('lots')"
    )


# --- annotations that cannot be resolved ----------------------------------------------------------


def test_an_unresolvable_annotation_leaves_only_its_own_argument_unchecked() -> None:
    def work(count: int, thing: Any) -> None: ...

    work.__annotations__["thing"] = "NoSuchType"

    assert ArgumentConverter(work)([1, {"any": "thing"}], {}) == ([1, {"any": "thing"}], {})
    assert "expected int" in rejection(work, "1", None)


def test_an_unresolvable_annotation_is_logged_as_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def work(thing: Any) -> None: ...

    work.__annotations__["thing"] = "NoSuchType"
    caplog.set_level(logging.WARNING, "aq.worker")
    ArgumentConverter(work)

    assert "work(): argument 'thing' is not checked: name 'NoSuchType' is not defined" in (
        caplog.text
    )

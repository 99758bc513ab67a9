"""Specification of aq.message: the versioned envelopes on the wire, and error payloads."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest

import aq
from aq.message import (
    PROTOCOL_VERSION,
    ControlMessage,
    Reply,
    ReplyKind,
    TaskMessage,
    decode_control,
    decode_reply,
    decode_task,
    encode_control,
    encode_reply,
    encode_task,
    error_payload,
    new_id,
    outcome_error,
    remote_error,
)
from aq.serializer import JSONSerializer

CODEC = JSONSerializer()


def minimal_task(**overrides: Any) -> dict[str, Any]:
    """The smallest valid task object, with ``overrides`` applied."""
    return {"v": 1, "id": "abc", "task": "send_email", "queue": "default", **overrides}


def minimal_reply(**overrides: Any) -> dict[str, Any]:
    """The smallest valid reply object, with ``overrides`` applied."""
    return {"v": 1, "correlation_id": "c1", "task_id": "t1", "kind": "result", **overrides}


def wire(obj: Any) -> bytes:
    return orjson.dumps(obj)


def without(obj: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k != key}


# --- task messages ----------------------------------------------------------------------------


def test_protocol_version_is_one() -> None:
    assert PROTOCOL_VERSION == 1


def test_task_round_trips_every_field() -> None:
    message = TaskMessage(
        id="0123456789abcdef0123456789abcdef",
        task="billing.charge",
        queue="payments",
        args=[1, "two", [3.0], {"four": None}],
        kwargs={"amount": "9.99", "tags": ["a", "b"]},
        headers={"trace": "xyz", "tenant": 42},
        attempt=3,
        max_attempts=5,
        priority=7,
        eta=1_700_000_100.5,
        expires=1_700_000_200.25,
        timeout=30.0,
        reply_to="replies.host-1",
        correlation_id="corr-1",
        created_at=1_700_000_000.125,
    )

    assert decode_task(encode_task(message, CODEC), CODEC) == message


def test_encoded_task_is_a_json_object_carrying_the_protocol_version() -> None:
    body = orjson.loads(encode_task(TaskMessage(id="a", task="t", queue="q"), CODEC))

    assert isinstance(body, dict)
    assert body["v"] == PROTOCOL_VERSION


def test_decoded_task_without_optional_fields_uses_their_defaults() -> None:
    message = decode_task(wire(minimal_task()), CODEC)

    assert message == TaskMessage(
        id="abc",
        task="send_email",
        queue="default",
        args=[],
        kwargs={},
        headers={},
        attempt=1,
        max_attempts=None,  # left to the worker's --default-retries
        priority=0,
        eta=None,
        expires=None,
        timeout=None,
        reply_to=None,
        correlation_id=None,
        created_at=0.0,
    )


@pytest.mark.parametrize("field", ["eta", "expires", "timeout", "reply_to", "correlation_id"])
def test_decoded_task_accepts_null_for_an_optional_field(field: str) -> None:
    message = decode_task(wire(minimal_task(**{field: None})), CODEC)

    assert getattr(message, field) is None


@pytest.mark.parametrize("field", ["eta", "expires", "timeout", "created_at"])
def test_decoded_task_accepts_an_integer_for_a_time_field(field: str) -> None:
    message = decode_task(wire(minimal_task(**{field: 1_700_000_000})), CODEC)

    assert getattr(message, field) == 1_700_000_000


def test_decoded_task_ignores_unknown_fields() -> None:
    message = decode_task(wire(minimal_task(future_field={"x": 1})), CODEC)

    assert message.id == "abc"


@pytest.mark.parametrize(
    "data",
    [b"not json", b"", b"\xff", b'{"v": 1, "id": '],
    ids=repr,
)
def test_decode_task_rejects_non_json(data: bytes) -> None:
    with pytest.raises(aq.MessageDecodeError):
        decode_task(data, CODEC)


@pytest.mark.parametrize(
    "obj",
    [[minimal_task()], "task", 1, None, True],
    ids=["array", "string", "number", "null", "bool"],
)
def test_decode_task_rejects_a_json_value_that_is_not_an_object(obj: Any) -> None:
    with pytest.raises(aq.MessageDecodeError, match="expected a JSON object"):
        decode_task(wire(obj), CODEC)


def test_decode_task_rejects_a_missing_version() -> None:
    with pytest.raises(aq.MessageDecodeError, match="protocol version"):
        decode_task(wire(without(minimal_task(), "v")), CODEC)


@pytest.mark.parametrize("version", [3, 0, "1", None], ids=repr)
def test_decode_task_rejects_an_unsupported_version(version: Any) -> None:
    with pytest.raises(aq.MessageDecodeError, match="unsupported protocol version"):
        decode_task(wire(minimal_task(v=version)), CODEC)


def test_workflow_fields_need_version_2_and_are_checked() -> None:
    flow = {"root": "r", "step": "chain step 1 (t)", "then": [{"chain": [{"task": "t"}]}]}
    with pytest.raises(aq.MessageDecodeError, match="come with protocol version 2"):
        decode_task(wire(minimal_task(wf=flow)), CODEC)
    with pytest.raises(aq.MessageDecodeError, match="come with protocol version 2"):
        decode_task(wire(minimal_task(v=2)), CODEC)
    with pytest.raises(aq.MessageDecodeError, match="task node needs string task and queue"):
        decode_task(wire(minimal_task(v=2, wf=flow)), CODEC)
    flow["then"] = [{"chain": [{"task": "t", "queue": "q"}]}, {"member": 3}]
    message = decode_task(wire(minimal_task(v=2, wf=flow)), CODEC)
    assert message.workflow == flow
    assert message.to_dict()["v"] == 2


def test_decode_task_rejects_a_boolean_version() -> None:
    with pytest.raises(aq.MessageDecodeError):
        decode_task(wire(minimal_task(v=True)), CODEC)


@pytest.mark.parametrize("field", ["id", "task", "queue"])
def test_decode_task_rejects_a_missing_required_field(field: str) -> None:
    with pytest.raises(aq.MessageDecodeError, match=re.escape(f"missing field {field!r}")):
        decode_task(wire(without(minimal_task(), field)), CODEC)


@pytest.mark.parametrize("field", ["id", "task", "queue"])
def test_decode_task_rejects_null_for_a_required_field(field: str) -> None:
    with pytest.raises(aq.MessageDecodeError, match=re.escape(repr(field))):
        decode_task(wire(minimal_task(**{field: None})), CODEC)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", 123),
        ("task", ["t"]),
        ("queue", {"name": "q"}),
        ("args", {"a": 1}),
        ("args", "1,2"),
        ("kwargs", [1, 2]),
        ("headers", "h"),
        ("attempt", "1"),
        ("attempt", True),
        ("attempt", 1.0),
        ("max_attempts", False),
        ("priority", 1.5),
        ("eta", "soon"),
        ("eta", True),
        ("expires", [1]),
        ("timeout", "30"),
        ("reply_to", 5),
        ("correlation_id", False),
        ("created_at", "yesterday"),
    ],
    ids=repr,
)
def test_decode_task_rejects_a_field_of_the_wrong_type(field: str, value: Any) -> None:
    with pytest.raises(
        aq.MessageDecodeError, match=re.escape(f"field {field!r} has the wrong type")
    ):
        decode_task(wire(minimal_task(**{field: value})), CODEC)


def test_message_decode_error_from_decode_task_is_a_value_error() -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the base class is the point
        decode_task(wire([]), CODEC)


# --- replies ----------------------------------------------------------------------------------

KINDS: list[ReplyKind] = ["result", "error", "progress", "item", "end"]


@pytest.mark.parametrize("kind", KINDS)
def test_reply_round_trips_for_each_kind(kind: ReplyKind) -> None:
    reply = Reply(
        correlation_id="corr-1",
        task_id="task-1",
        kind=kind,
        payload={"value": [1, "two", None], "ok": True},
        seq=4,
    )

    assert decode_reply(encode_reply(reply, CODEC), CODEC) == reply


@pytest.mark.parametrize("payload", [None, 0, "text", [1, 2], {"nested": {"a": [True]}}], ids=repr)
def test_reply_round_trips_any_json_payload(payload: Any) -> None:
    reply = Reply(correlation_id="c", task_id="t", kind="result", payload=payload)

    assert decode_reply(encode_reply(reply, CODEC), CODEC).payload == payload


def test_encoded_reply_carries_the_protocol_version() -> None:
    body = orjson.loads(encode_reply(Reply("c", "t", "end"), CODEC))

    assert body["v"] == PROTOCOL_VERSION


def test_decoded_reply_without_optional_fields_uses_their_defaults() -> None:
    reply = decode_reply(wire(minimal_reply()), CODEC)

    assert reply == Reply(correlation_id="c1", task_id="t1", kind="result", payload=None, seq=0)


@pytest.mark.parametrize("kind", ["done", "RESULT", ""], ids=repr)
def test_decode_reply_rejects_an_unknown_kind(kind: str) -> None:
    with pytest.raises(aq.MessageDecodeError, match="unknown reply kind"):
        decode_reply(wire(minimal_reply(kind=kind)), CODEC)


@pytest.mark.parametrize("field", ["kind", "correlation_id", "task_id"])
def test_decode_reply_rejects_a_missing_required_field(field: str) -> None:
    with pytest.raises(aq.MessageDecodeError, match=re.escape(f"missing field {field!r}")):
        decode_reply(wire(without(minimal_reply(), field)), CODEC)


@pytest.mark.parametrize(
    ("field", "value"),
    [("kind", 1), ("correlation_id", 1), ("task_id", None), ("seq", "0"), ("seq", True)],
    ids=repr,
)
def test_decode_reply_rejects_a_field_of_the_wrong_type(field: str, value: Any) -> None:
    with pytest.raises(aq.MessageDecodeError, match=re.escape(repr(field))):
        decode_reply(wire(minimal_reply(**{field: value})), CODEC)


def test_decode_reply_rejects_a_json_array() -> None:
    with pytest.raises(aq.MessageDecodeError, match="expected a JSON object"):
        decode_reply(wire([minimal_reply()]), CODEC)


def test_decode_reply_rejects_an_unsupported_version() -> None:
    with pytest.raises(aq.MessageDecodeError, match="unsupported protocol version"):
        decode_reply(wire(minimal_reply(v=2)), CODEC)


def test_decode_reply_rejects_non_json() -> None:
    with pytest.raises(aq.MessageDecodeError):
        decode_reply(b"}{", CODEC)


# --- ids --------------------------------------------------------------------------------------


def test_new_id_is_32_lowercase_hex_digits() -> None:
    assert re.fullmatch(r"[0-9a-f]{32}", new_id())


def test_new_id_is_unique() -> None:
    ids = {new_id() for _ in range(1000)}

    assert len(ids) == 1000


@pytest.mark.parametrize(
    ("changes", "hint"),
    [
        ({"id": ""}, "must not be empty"),
        ({"attempt": 0}, "outside 1..max_attempts"),
        ({"attempt": 5, "max_attempts": 3}, "outside 1..max_attempts"),
        ({"priority": 42}, "outside 0..9"),
        ({"priority": -1}, "outside 0..9"),
    ],
)
def test_decode_task_rejects_out_of_range_fields(changes: dict[str, object], hint: str) -> None:
    body = {"v": 1, "id": "a", "task": "t", "queue": "q", **changes}
    with pytest.raises(aq.MessageDecodeError, match=hint):
        decode_task(orjson.dumps(body), JSONSerializer())


def test_a_control_message_round_trips() -> None:
    command = ControlMessage("cancel", "t-1")
    decoded = decode_control(encode_control(command, CODEC), CODEC)
    assert decoded == command
    assert orjson.loads(encode_control(command, CODEC)) == {
        "v": 1,
        "op": "cancel",
        "task_id": "t-1",
        "id": command.id,
    }


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff", "not application/json"),
        (b"[1]", "not a v1 control message"),
        (b'{"v": 2, "op": "cancel", "task_id": "t"}', "not a v1 control message"),
        (b'{"v": 1, "op": "reboot", "task_id": "t"}', "unknown control operation 'reboot'"),
        (b'{"v": 1, "op": "cancel", "task_id": 7}', "task_id must be a string"),
        (b'{"v": 1, "op": "inspect", "task_id": "", "arg": 5}', "arg must be a string"),
        (b'{"v": 1, "op": "shutdown", "task_id": "", "worker": 1}', "worker must be a string"),
        (b'{"v": 1, "op": "inspect", "task_id": "", "reply_to": []}', "reply_to must be a string"),
        (
            b'{"v": 1, "op": "shutdown", "task_id": "", "expires": "soon"}',
            "expires must be a number",
        ),
    ],
)
def test_a_control_message_that_cannot_be_acted_on_says_why(body: bytes, reason: str) -> None:
    with pytest.raises(aq.MessageDecodeError, match=reason):
        decode_control(body, CODEC)


def test_an_error_payload_names_builtins_bare_and_other_types_qualified() -> None:
    assert error_payload(ValueError("bad"), with_traceback=False) == {
        "type": "ValueError",
        "message": "bad",
        "traceback": "",
    }
    assert error_payload(aq.SerializationError("x"))["type"] == "aq.errors.SerializationError"
    assert "Traceback" in error_payload(_raised(KeyError("k")))["traceback"]


def _raised(exc: Exception) -> Exception:
    try:
        raise exc
    except Exception as caught:
        return caught


@pytest.mark.parametrize(
    "cls", [aq.TaskTimeout, aq.TaskCancelled, aq.TaskExpired, aq.WorkerCrashed]
)
def test_aq_outcomes_cross_the_wire_as_themselves(cls: type[aq.TaskFailed]) -> None:
    sent = outcome_error(cls, "t-1", "why")
    received = remote_error("t-1", error_payload(sent))
    assert type(received) is cls
    assert (received.remote_type, received.remote_message) == (sent.remote_type, "why")


def test_any_other_remote_error_is_a_task_failed_with_its_type_and_text() -> None:
    received = remote_error("t-1", {"type": "app.Declined", "message": "no", "traceback": "tb"})
    assert type(received) is aq.TaskFailed
    assert (received.remote_type, received.remote_message, received.remote_traceback) == (
        "app.Declined",
        "no",
        "tb",
    )
    assert remote_error("t-1", "junk").remote_type == "unknown"


def test_an_inspect_command_survives_the_wire_with_every_field() -> None:
    command = ControlMessage(
        "inspect", "", arg="active", worker="h.1", reply_to="inbox-1", expires=1800000000.5
    )
    assert decode_control(encode_control(command, CODEC), CODEC) == command


def test_a_cancel_carries_no_optional_fields() -> None:
    data = ControlMessage("cancel", "t-1", id="c-1").to_dict()
    assert data == {"v": 1, "op": "cancel", "task_id": "t-1", "id": "c-1"}

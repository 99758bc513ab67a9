"""The wire protocol: every encoding that crosses the broker, built and parsed here.

A :class:`TaskMessage` is what a producer publishes and a worker consumes; a
:class:`Reply` is what a worker sends back to the producer's reply address
(outcome, progress, stream items); a :class:`ControlMessage` is what
``broker.cancel()``, ``aq inspect`` and ``aq control`` broadcast to every
worker (monitoring events have their own format: :mod:`aq.monitor.wire`).
An error reply's payload is built by :func:`error_payload` and turned back
into an exception by
:func:`remote_error`, with the type names of aq's own outcomes from
:func:`error_type`. All are plain JSON objects whose fields are specified in
docs/protocol.md. Decoding validates every field before anything acts on it,
so a malformed message becomes a :class:`MessageDecodeError` (and a dead
letter) rather than a crash or a surprise.
"""

from __future__ import annotations

import itertools
import os
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from aq.envelope import Codec
from aq.errors import (
    MessageDecodeError,
    SerializationError,
    TaskCancelled,
    TaskExpired,
    TaskFailed,
    TaskTimeout,
    UntrustedMessage,
    WorkerCrashed,
)
from aq.serializer import Serializer
from aq.workflow.wire import parse_flow

__all__ = [
    "PROTOCOL_VERSION",
    "WORKFLOW_VERSION",
    "ControlMessage",
    "ControlOp",
    "Reply",
    "ReplyKind",
    "TaskMessage",
    "decode_control",
    "decode_reply",
    "decode_task",
    "encode_control",
    "encode_reply",
    "encode_task",
    "error_payload",
    "error_type",
    "new_id",
    "outcome_error",
    "remote_error",
    "result_key",
    "task_message",
]

PROTOCOL_VERSION: Final = 1
#: The version of a task message that carries workflow fields (``wf``). A worker
#: that knows only version 1 refuses it (a dead letter saying why) rather than
#: run the step and drop the rest of its workflow.
WORKFLOW_VERSION: Final = 2
_TASK_VERSIONS: Final = (PROTOCOL_VERSION, WORKFLOW_VERSION)


def result_key(task_id: str) -> str:
    """The store key under which a task's final reply is kept (``result_ttl``):
    its encoded :class:`Reply`, for ``Broker.get_result`` from any process."""
    return f"result:{task_id}"


ReplyKind = Literal["result", "error", "progress", "item", "end"]
_REPLY_KINDS: Final = frozenset(("result", "error", "progress", "item", "end"))


class _IdSource:
    """Ids from a random 64-bit per-process prefix and a counter: unique, and far
    cheaper than reading 128 random bits per message. A forked child draws a new
    prefix, so parent and child never share one."""

    def __init__(self) -> None:
        self.reseed()

    def reseed(self) -> None:
        self.prefix = os.urandom(8).hex()
        self.counter = itertools.count(int.from_bytes(os.urandom(4)))

    def __call__(self) -> str:
        return f"{self.prefix}{next(self.counter) & 0xFFFFFFFFFFFFFFFF:016x}"


_ids = _IdSource()
os.register_at_fork(after_in_child=_ids.reseed)


def new_id() -> str:
    """A fresh message id: 32 lowercase hex digits, unique across processes."""
    return _ids()


@dataclass(slots=True)
class TaskMessage:
    """One request to run a task. Field meanings are in docs/protocol.md."""

    id: str
    task: str
    queue: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, Any] = field(default_factory=dict)
    attempt: int = 1
    #: Attempts in all; ``0``: without limit; ``None`` (not on the wire): the
    #: task set no ``retries``, and the worker's default applies.
    max_attempts: int | None = None
    priority: int = 0
    eta: float | None = None
    expires: float | None = None
    timeout: float | None = None
    reply_to: str | None = None
    correlation_id: str | None = None
    created_at: float = field(default_factory=time.time)
    #: The workflow this message is a step of (``wf`` on the wire; version 2):
    #: what its outcome starts next. Its fields are in docs/protocol.md and
    #: :mod:`aq.workflow.wire`.
    workflow: dict[str, Any] | None = None
    #: How the message travels, not fields of it: its payload's content type
    #: and its compression (``"zstd"``, ``"zlib"``, ``"none"``), as read off
    #: the wire or asked for at ``kiq()``; ``None``: the broker's. A retry goes
    #: as its attempt came, and the replies in the content type it came in.
    content_type: str | None = field(default=None, compare=False)
    compression: str | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object that goes on the wire."""
        obj = {
            "v": PROTOCOL_VERSION if self.workflow is None else WORKFLOW_VERSION,
            "id": self.id,
            "task": self.task,
            "queue": self.queue,
            "args": self.args,
            "kwargs": self.kwargs,
            "headers": self.headers,
            "attempt": self.attempt,
            "priority": self.priority,
            "eta": self.eta,
            "expires": self.expires,
            "timeout": self.timeout,
            "reply_to": self.reply_to,
            "correlation_id": self.correlation_id,
            "created_at": self.created_at,
        }
        if self.max_attempts is not None:
            obj["max_attempts"] = self.max_attempts
        if self.workflow is not None:
            obj["wf"] = self.workflow
        return obj


@dataclass(slots=True)
class Reply:
    """One message from a worker to a producer about one task."""

    correlation_id: str
    task_id: str
    kind: ReplyKind
    payload: Any = None
    seq: int = 0
    #: The outcome of member ``member`` of the group whose handle waits under
    #: ``correlation_id`` (a workflow's group; docs/protocol.md), else ``None``.
    member: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object that goes on the wire."""
        obj = {
            "v": PROTOCOL_VERSION,
            "correlation_id": self.correlation_id,
            "task_id": self.task_id,
            "kind": self.kind,
            "seq": self.seq,
            "payload": self.payload,
        }
        if self.member is not None:
            obj["member"] = self.member
        return obj


def encode_task(message: TaskMessage, serializer: Serializer | Codec) -> bytes:
    """Encode a task message (as it asks, through a :class:`Codec`); raises
    :class:`SerializationError`."""
    if isinstance(serializer, Codec):
        return serializer.dumps(
            message.to_dict(), compression=message.compression, content_type=message.content_type
        )
    return serializer.dumps(message.to_dict())


def encode_reply(
    reply: Reply, serializer: Serializer | Codec, content_type: str | None = None
) -> bytes:
    """Encode a reply, through a :class:`Codec` in ``content_type`` if given (the
    producer's, from its task message). Through a codec, an error reply over its
    ``max_size`` (which the producer would not read) has its message and
    traceback cut to fit.

    Raises:
        aq.SerializationError: it cannot be encoded, or another kind of reply is
            over the codec's ``max_size``.
    """
    if not isinstance(serializer, Codec):
        return serializer.dumps(reply.to_dict())
    limit = serializer.max_size
    for share in (0, 4, 16):  # an error's text is cut to fit, so the error arrives
        if share:
            if reply.kind != "error" or not isinstance(reply.payload, dict):
                break
            reply = _cut(reply, limit // share)
        body, size = serializer.encode(reply.to_dict(), content_type=content_type)
        if max(size, len(body)) <= limit:
            return body
    raise SerializationError(
        f"its {reply.kind} is {max(size, len(body))} bytes encoded, over max_message_size "
        f"({limit}): return a reference to the data instead"
    )


def _cut(reply: Reply, most: int) -> Reply:
    """An error reply whose message keeps its first ``most`` characters and whose
    traceback keeps its last (where the error was raised)."""
    payload = dict(reply.payload)
    text, trace = str(payload.get("message", "")), str(payload.get("traceback", ""))
    if len(text) > most:
        payload["message"] = text[:most] + " ... (cut to fit max_message_size)"
    if len(trace) > most:
        payload["traceback"] = "... (cut to fit max_message_size)\n" + trace[-most:]
    return Reply(reply.correlation_id, reply.task_id, reply.kind, payload, reply.seq, reply.member)


def _object(
    data: bytes, serializer: Serializer, versions: tuple[int, ...] = (PROTOCOL_VERSION,)
) -> dict[str, Any]:
    return _versioned(serializer.loads(data), versions)


def _versioned(obj: Any, versions: tuple[int, ...]) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise MessageDecodeError(f"expected a JSON object, got {type(obj).__name__}")
    version = obj.get("v")
    if type(version) is not int or version not in versions:
        speaks = " and ".join(str(v) for v in versions)
        raise MessageDecodeError(
            f"unsupported protocol version {version!r} (this aq speaks {speaks})"
        )
    return obj


_REQUIRED: Final = object()
_NUM = (int, float)

# (field, exact JSON types allowed, default). Exact types: a bool is not an int here.
# A default of list or dict means "a fresh empty one".
_TASK_FIELDS: Final[tuple[tuple[str, tuple[type, ...], Any], ...]] = (
    ("id", (str,), _REQUIRED),
    ("task", (str,), _REQUIRED),
    ("queue", (str,), _REQUIRED),
    ("args", (list,), list),
    ("kwargs", (dict,), dict),
    ("headers", (dict,), dict),
    ("attempt", (int,), 1),
    ("max_attempts", (int,), None),
    ("priority", (int,), 0),
    ("eta", _NUM, None),
    ("expires", _NUM, None),
    ("timeout", _NUM, None),
    ("reply_to", (str,), None),
    ("correlation_id", (str,), None),
    ("created_at", _NUM, 0.0),
    ("wf", (dict,), None),
)
_REPLY_FIELDS: Final[tuple[tuple[str, tuple[type, ...], Any], ...]] = (
    ("correlation_id", (str,), _REQUIRED),
    ("task_id", (str,), _REQUIRED),
    ("kind", (str,), _REQUIRED),
    ("payload", (object,), None),
    ("seq", (int,), 0),
    ("member", (int,), None),
)


def _fields(obj: dict[str, Any], spec: tuple[tuple[str, tuple[type, ...], Any], ...]) -> list[Any]:
    values = []
    for key, types, default in spec:
        value = obj.get(key, default)
        if value is default:
            if default is _REQUIRED:
                raise MessageDecodeError(f"missing field {key!r}")
            if default is list or default is dict:
                value = default()
        elif type(value) not in types and types[0] is not object:
            if value is None and default is None:
                pass
            else:
                raise MessageDecodeError(
                    f"field {key!r} has the wrong type: {type(value).__name__}"
                )
        values.append(value)
    return values


MAX_PRIORITY: Final = 9


def decode_task(data: bytes, serializer: Serializer | Codec) -> TaskMessage:
    """Decode and validate a task message; raises :class:`MessageDecodeError`
    (:class:`aq.UntrustedMessage` for a signature a :class:`Codec` refuses)."""
    if isinstance(serializer, Codec):
        opened = serializer.open(data)
        message = task_message(opened.value)
        message.content_type = opened.content_type
        message.compression = opened.compression or "none"  # a retry goes as this came
        return message
    return task_message(serializer.loads(data))


def task_message(obj: Any) -> TaskMessage:
    """Validate a decoded task message; raises :class:`MessageDecodeError`."""
    obj = _versioned(obj, _TASK_VERSIONS)
    message = TaskMessage(*_fields(obj, _TASK_FIELDS))
    if (message.workflow is not None) != (obj["v"] == WORKFLOW_VERSION):
        raise MessageDecodeError(
            f"workflow fields (wf) come with protocol version {WORKFLOW_VERSION}, and only they"
        )
    if message.workflow is not None:
        parse_flow(message.workflow)
    if not message.id or not message.task or not message.queue:
        raise MessageDecodeError("id, task and queue must not be empty")
    limit = message.max_attempts
    if message.attempt < 1 or (limit is not None and limit != 0 and message.attempt > limit):
        raise MessageDecodeError(f"attempt {message.attempt} is outside 1..max_attempts ({limit})")
    if limit is not None and limit < 0:
        raise MessageDecodeError(f"max_attempts {limit} is negative (0: without limit)")
    if not 0 <= message.priority <= MAX_PRIORITY:
        raise MessageDecodeError(f"priority {message.priority} is outside 0..{MAX_PRIORITY}")
    return message


def decode_reply(data: bytes, serializer: Serializer) -> Reply:
    """Decode and validate a reply; raises :class:`MessageDecodeError`."""
    fields = _fields(_object(data, serializer), _REPLY_FIELDS)
    if fields[2] not in _REPLY_KINDS:
        raise MessageDecodeError(f"unknown reply kind {fields[2]!r}")
    return Reply(*fields)


# -- control -------------------------------------------------------------------------


#: What a control message asks: cancel a task, reload schedules, answer a
#: question (``inspect``), change a rate limit, or shut down.
ControlOp = Literal["cancel", "schedules", "inspect", "rate_limit", "shutdown"]
_CONTROL_OPS: frozenset[str] = frozenset(
    ("cancel", "schedules", "inspect", "rate_limit", "shutdown")
)


@dataclass(frozen=True, slots=True)
class ControlMessage:
    """A command broadcast to every worker and scheduler.

    ``op`` says what: ``cancel`` (the task ``task_id``), ``schedules`` (the
    schedule named ``task_id``, kept in the store, changed; ``""``: any of
    them), ``inspect`` (answer the question ``arg``: ``ping``, ``stats``,
    ``active``, ``reserved`` or ``registered``), ``rate_limit`` (limit the task
    named ``task_id`` to the rate ``arg``, ``""`` for none), or ``shutdown``.
    With ``worker``, only the worker of that id acts; with ``reply_to``, each
    that acts answers there, a reply whose ``correlation_id`` is this
    message's ``id`` and whose ``task_id`` is the worker's id. A message
    whose ``expires`` (UNIX time) has passed is ignored: a worker that
    starts later (and reads the control messages of the last hour, on
    Redis) does not answer old questions or obey old commands.
    """

    op: ControlOp
    task_id: str
    id: str = field(default_factory=lambda: new_id())
    arg: str = ""
    worker: str | None = None
    reply_to: str | None = None
    expires: float | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"v": PROTOCOL_VERSION, "op": self.op, "task_id": self.task_id}
        data["id"] = self.id
        if self.arg:
            data["arg"] = self.arg
        if self.worker is not None:
            data["worker"] = self.worker
        if self.reply_to is not None:
            data["reply_to"] = self.reply_to
        if self.expires is not None:
            data["expires"] = self.expires
        return data


def encode_control(command: ControlMessage, serializer: Serializer) -> bytes:
    """Encode a control message."""
    return serializer.dumps(command.to_dict())


def decode_control(data: bytes, serializer: Serializer) -> ControlMessage:
    """Decode and validate a control message; raises :class:`MessageDecodeError`
    saying why it cannot be acted on."""
    try:
        obj = serializer.loads(data)
    except UntrustedMessage:
        raise
    except MessageDecodeError:
        raise MessageDecodeError(f"not {serializer.content_type}") from None
    version = obj.get("v") if isinstance(obj, dict) else None
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise MessageDecodeError(f"not a v{PROTOCOL_VERSION} control message")
    op, task_id, command_id = obj.get("op"), obj.get("task_id"), obj.get("id")
    if op not in _CONTROL_OPS:
        raise MessageDecodeError(f"unknown control operation {op!r}")
    if not isinstance(task_id, str):
        raise MessageDecodeError("task_id must be a string")
    arg, worker, reply_to = obj.get("arg", ""), obj.get("worker"), obj.get("reply_to")
    if not isinstance(arg, str):
        raise MessageDecodeError("arg must be a string")
    for name, value in (("worker", worker), ("reply_to", reply_to)):
        if value is not None and not isinstance(value, str):
            raise MessageDecodeError(f"{name} must be a string")
    expires = obj.get("expires")
    if expires is not None and (not isinstance(expires, int | float) or isinstance(expires, bool)):
        raise MessageDecodeError("expires must be a number")
    command_id = command_id if isinstance(command_id, str) else ""
    return ControlMessage(op, task_id, command_id, arg, worker, reply_to, expires)


# -- errors --------------------------------------------------------------------------

#: aq's own outcomes, by the type name an error reply carries for them.
_OUTCOMES: dict[str, type[TaskFailed]] = {}


def error_type(cls: type[BaseException]) -> str:
    """The type name an error reply carries for ``cls``: bare for builtins
    (``"ValueError"``), qualified otherwise (``"aq.errors.TaskTimeout"``)."""
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


for _outcome in (TaskTimeout, TaskCancelled, TaskExpired, WorkerCrashed):
    _OUTCOMES[error_type(_outcome)] = _outcome


def outcome_error(cls: type[TaskFailed], task_id: str, text: str) -> TaskFailed:
    """One of aq's own outcomes (``TaskTimeout``, ``TaskCancelled`` ...) for a task,
    as both sides of the wire name it."""
    return cls(task_id, error_type(cls), text)


def error_payload(exc: BaseException, with_traceback: bool = True) -> dict[str, str]:
    """Describe ``exc`` for an error reply: type name, message, traceback text."""
    if isinstance(exc, TaskFailed):  # aq's own outcomes already carry type and message
        kind, text = exc.remote_type, exc.remote_message
    else:
        kind, text = error_type(type(exc)), str(exc)
    return {
        "type": kind,
        "message": text,
        "traceback": "".join(traceback.format_exception(exc)) if with_traceback else "",
    }


def remote_error(task_id: str, payload: Any) -> TaskFailed:
    """The exception a producer raises for an error reply's ``payload``: the
    matching subclass for aq's own outcomes, :class:`TaskFailed` otherwise. A
    workflow step's error names its step and its own id (``step``, ``task_id``
    in the payload), which then replace ``task_id``."""
    if not isinstance(payload, dict):
        payload = {"type": "unknown", "message": repr(payload)}
    kind = str(payload.get("type", "unknown"))
    cls = _OUTCOMES.get(kind, TaskFailed)
    step, step_id = payload.get("step"), payload.get("task_id")
    return cls(
        step_id if isinstance(step_id, str) else task_id,
        kind,
        str(payload.get("message", "")),
        str(payload.get("traceback", "")),
        step if isinstance(step, str) else None,
    )

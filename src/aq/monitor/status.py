"""A task's state by id, kept in the store, readable from any process.

When a broker keeps results (``result_ttl``), it keeps each task's state too,
under ``status:<task id>`` with the same lifetime: the producer writes
``queued`` (or ``scheduled``, with its due time) when it sends the task, unless
a worker has written already; a worker writes ``running`` (where, since when,
which attempt) when the function starts and ``retrying`` (with the next
attempt's due time) before it sends a retry back. The final state is not
written again: it is read from the kept result (``result:<task id>``), which
the worker writes anyway; only a workflow step, whose result is not kept
under its own id, has its end written as a state (but the step that carries
its workflow's handle id, whose end is the workflow's kept outcome). So
tracking costs one store write at ``kiq()`` and one per attempt, sent
without waiting (a lost one makes the state lag; the result still wins), and
``Broker(track_states=False)`` turns it off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any, Literal, get_args

from aq.errors import (
    MessageDecodeError,
    TaskCancelled,
    TaskExpired,
    UnknownTask,
    WorkerCrashed,
)
from aq.logs import event
from aq.message import TaskMessage, decode_reply, error_type, result_key
from aq.serializer import Serializer
from aq.transport.store import Store

__all__ = ["State", "StatusWriter", "TaskStatus", "read_status", "status_key"]

log = logging.getLogger("aq.status")

State = Literal[
    "queued",
    "scheduled",
    "running",
    "retrying",
    "succeeded",
    "failed",
    "dead-lettered",
    "cancelled",
    "unknown",
]

_LIMIT_KEY_FAILED = "aq.worker.cluster.LimitKeyFailed"  # the worker's; not imported here
#: Error types whose reply means the message went to the dead letters without
#: the task failing by itself.
_DEAD_LETTERED = frozenset(
    [*(error_type(cls) for cls in (TaskExpired, WorkerCrashed, UnknownTask)), _LIMIT_KEY_FAILED]
)
_CANCELLED = error_type(TaskCancelled)
_STATES: dict[object, State] = {state: state for state in get_args(State)}
_MAX_PENDING = 10_000
_WARN_EVERY = 30.0


def status_key(task_id: str) -> str:
    """Where the state of ``task_id`` is kept."""
    return f"status:{task_id}"


@dataclass(frozen=True, slots=True)
class TaskStatus:
    """What is known of one task.

    Attributes:
        task_id: the id asked about.
        state: ``queued``, ``scheduled``, ``running``, ``retrying``,
            ``succeeded``, ``failed``, ``dead-lettered``, ``cancelled``, or
            ``unknown`` (never seen, or forgotten after ``result_ttl``).
        name: the task's name, when known.
        queue: its queue, when known.
        attempt: the attempt running, or (``retrying``) the next one.
        eta: when a ``scheduled`` or ``retrying`` task is due (UNIX seconds).
        worker: the worker running it (``running``).
        since: when it entered this state (UNIX seconds), when known.
        error_type: the exception type of a failure (or of the attempt
            that is being retried).
        error: its message.
    """

    task_id: str
    state: State
    name: str | None = None
    queue: str | None = None
    attempt: int | None = None
    eta: float | None = None
    worker: str | None = None
    since: float | None = None
    error_type: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Every field, for JSON output."""
        return {name: getattr(self, name) for name in self.__slots__}


def record(state: State, message: TaskMessage, **fields: Any) -> dict[str, Any]:
    """The stored form of a state of ``message``."""
    entry: dict[str, Any] = {
        "v": 1,
        "state": state,
        "name": message.task,
        "queue": message.queue,
        "attempt": message.attempt,
        "since": time.time(),
    }
    entry.update(fields)
    return entry


def lifetime(ttl: float, eta: float | None) -> float:
    """How long to keep a state: ``ttl`` after the task is due."""
    return ttl + max(0.0, eta - time.time()) if eta is not None else ttl


class StatusWriter:
    """Writes states to the store without making the caller wait.

    The writes gathered while the last batch was on its way go as one
    :meth:`Store.set_many` (one script call on Redis), one batch at a time, so
    a task's later state never overtakes its earlier one; at most
    ``_MAX_PENDING`` wait, and a write that fails is logged (at most every
    30 s) and dropped: the state lags, the result still tells the end.
    """

    def __init__(self, store: Store, serializer: Serializer, ttl: float) -> None:
        self.store = store
        self.serializer = serializer
        self.ttl = ttl
        self._waiting: list[tuple[str, bytes, float]] = []
        self._sender: asyncio.Task[None] | None = None
        self._warned = 0.0
        #: States not written: too many writes waited for the store.
        self.dropped = 0

    def write(
        self, task_id: str, entry: dict[str, Any], eta: float | None = None, extra: float = 0.0
    ) -> None:
        """Keep ``entry`` as the state of ``task_id`` for ``result_ttl`` after
        ``eta`` (or now), plus ``extra`` seconds."""
        if len(self._waiting) >= _MAX_PENDING:
            self.dropped += 1
            self._warn("too many state writes waiting for the store")
            return
        ttl = lifetime(self.ttl, eta) + extra
        self._waiting.append((status_key(task_id), self.serializer.dumps(entry), ttl))
        if self._sender is None:
            self._sender = asyncio.ensure_future(self._send())

    async def _send(self) -> None:
        try:
            while self._waiting:
                items, self._waiting = self._waiting, []
                try:
                    await self.store.set_many(items)
                except Exception as exc:  # best effort: the state lags, the result tells
                    self.dropped += len(items)
                    self._warn(f"{type(exc).__name__}: {exc}")
        finally:
            self._sender = None

    def _warn(self, error: str) -> None:
        now = time.monotonic()
        if now - self._warned >= _WARN_EVERY:
            self._warned = now
            event(log, logging.WARNING, "status.unwritten", error=error, dropped=self.dropped)

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait (at most ``timeout`` seconds) for the writes made so far."""
        sender = self._sender
        if sender is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await asyncio.shield(sender)


async def read_status(store: Store, serializer: Serializer, task_id: str) -> TaskStatus:
    """The state of ``task_id``: its kept result if it has one, else its last state."""
    kept, body = await asyncio.gather(
        store.get(result_key(task_id)), store.get(status_key(task_id))
    )
    entry = _entry(body, serializer)
    state = entry.get("state")
    eta = _float(entry.get("eta"))
    error = entry.get("error")
    if not isinstance(error, dict):
        error = {}
    if kept is not None:
        final = _final(kept, serializer)
        if final is not None:
            state, error, eta = final[0], final[1], None
    if state == "queued" and eta is not None and eta > time.time():
        state = "scheduled"
    if state not in _STATES or state == "unknown":
        return TaskStatus(task_id, "unknown")
    return TaskStatus(
        task_id,
        _STATES[state],
        name=_str(entry.get("name")),
        queue=_str(entry.get("queue")),
        attempt=_int(entry.get("attempt")),
        eta=eta,
        worker=_str(entry.get("worker")),
        since=_float(entry.get("since")) if kept is None else None,
        error_type=_str(error.get("type")),
        error=_str(error.get("message")),
    )


def _final(kept: bytes, serializer: Serializer) -> tuple[State, dict[str, Any]] | None:
    """The final state a kept result tells, and its error (type, message)."""
    try:
        reply = decode_reply(kept, serializer)
    except MessageDecodeError:
        return None
    if reply.kind != "error":
        return "succeeded", {}
    details = reply.payload if isinstance(reply.payload, dict) else {}
    kind = details.get("type")
    if kind == _CANCELLED:
        return "cancelled", details
    if kind in _DEAD_LETTERED:
        return "dead-lettered", details
    return "failed", details


def _entry(body: bytes | None, serializer: Serializer) -> dict[str, Any]:
    if body is None:
        return {}
    try:
        entry = serializer.loads(body)
    except MessageDecodeError:
        return {}
    return entry if isinstance(entry, dict) and entry.get("v") == 1 else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None

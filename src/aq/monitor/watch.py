"""The hooks a worker calls as a task moves through its life, and their sinks.

The executor and settler call one :class:`TaskWatch` at each step: received,
started, then one end (succeeded, failed, retried, cancelled, expired,
dead-lettered). Nothing is called when nothing watches: the worker holds
``None`` then, so monitoring that is off costs one comparison per step.
Behind the hook sit the sinks that are switched on: :class:`EventSink`
(``--events``), :class:`StatusSink` (states kept with ``result_ttl``) and the
Prometheus metrics (:mod:`aq.monitor.metrics`); :class:`Watchers` calls each.
Hooks are plain functions that must not block or raise: they only record.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from aq.message import TaskMessage, error_type
from aq.monitor.emitter import EventEmitter
from aq.monitor.status import State, StatusWriter, record

__all__ = ["EventSink", "StatusSink", "TaskWatch", "Watchers", "error_fields"]

log = logging.getLogger("aq.events")
_MAX_TEXT = 1000


def error_fields(error: BaseException | None) -> dict[str, str]:
    """An exception as events and states carry it: type name and message."""
    if error is None:
        return {"type": "unknown", "message": ""}
    remote = getattr(error, "remote_type", None)
    if isinstance(remote, str):  # aq's own outcomes name themselves as the producer sees them
        return {"type": remote, "message": str(getattr(error, "remote_message", ""))[:_MAX_TEXT]}
    return {"type": error_type(type(error)), "message": str(error)[:_MAX_TEXT]}


class TaskWatch:
    """What a worker reports; each hook does nothing here."""

    def received(self, message: TaskMessage, queue: str) -> None:
        """The message was decoded and will run here (after its limits allow)."""

    def started(self, message: TaskMessage) -> None:
        """The function starts (its limits allowed it)."""

    def succeeded(self, message: TaskMessage, runtime: float, value: Any) -> None:
        """It returned, and its result was handed off."""

    def failed(self, message: TaskMessage, runtime: float, error: BaseException | None) -> None:
        """It failed for good (no attempts left, or it cannot run): dead-lettered."""

    def retried(
        self, message: TaskMessage, runtime: float, error: BaseException | None, eta: float
    ) -> None:
        """It failed and will run again at ``eta``; ``message.attempt`` is still the
        attempt that failed (called before the retry is sent)."""

    def cancelled(self, message: TaskMessage, runtime: float) -> None:
        """It was cancelled, before or while it ran."""

    def expired(self, message: TaskMessage) -> None:
        """Its ``expires`` time passed before it ran: dead-lettered."""

    def dead_lettered(self, message: TaskMessage | None, queue: str, reason: str) -> None:
        """It could not run at all (undecodable, unknown task, crashed its workers...)."""


class Watchers(TaskWatch):
    """Calls every watch in turn."""

    def __init__(self, watches: Sequence[TaskWatch]) -> None:
        self.watches = tuple(watches)

    def received(self, message: TaskMessage, queue: str) -> None:
        for watch in self.watches:
            watch.received(message, queue)

    def started(self, message: TaskMessage) -> None:
        for watch in self.watches:
            watch.started(message)

    def succeeded(self, message: TaskMessage, runtime: float, value: Any) -> None:
        for watch in self.watches:
            watch.succeeded(message, runtime, value)

    def failed(self, message: TaskMessage, runtime: float, error: BaseException | None) -> None:
        for watch in self.watches:
            watch.failed(message, runtime, error)

    def retried(
        self, message: TaskMessage, runtime: float, error: BaseException | None, eta: float
    ) -> None:
        for watch in self.watches:
            watch.retried(message, runtime, error, eta)

    def cancelled(self, message: TaskMessage, runtime: float) -> None:
        for watch in self.watches:
            watch.cancelled(message, runtime)

    def expired(self, message: TaskMessage) -> None:
        for watch in self.watches:
            watch.expired(message)

    def dead_lettered(self, message: TaskMessage | None, queue: str, reason: str) -> None:
        for watch in self.watches:
            watch.dead_lettered(message, queue, reason)


def combine(watches: Sequence[TaskWatch]) -> TaskWatch | None:
    """One watch for ``watches``: ``None`` for none, itself for one."""
    if not watches:
        return None
    return watches[0] if len(watches) == 1 else Watchers(watches)


class EventSink(TaskWatch):
    """Turns a worker's hooks into events.

    Args:
        emitter: where the events go.
        worker: this worker's id; ``host`` its host name.
        with_data: names of the tasks whose arguments and results events carry
            (``@broker.task(event_data=True)``).
    """

    def __init__(
        self, emitter: EventEmitter, worker: str, host: str, with_data: frozenset[str]
    ) -> None:
        self.emitter = emitter
        #: (worker id, host), as every event of this worker carries them.
        self.source = (worker, host)
        self.with_data = with_data

    def received(self, message: TaskMessage, queue: str) -> None:
        extra: dict[str, Any] | None = None
        if message.task in self.with_data:
            extra = {"args": message.args, "kwargs": message.kwargs}
        if message.eta is not None:
            extra = (extra or {}) | {"eta": message.eta}
        self.emitter.emit_task("task-received", message, self.source, extra)

    def started(self, message: TaskMessage) -> None:
        self.emitter.emit_task("task-started", message, self.source)

    def succeeded(self, message: TaskMessage, runtime: float, value: Any) -> None:
        extra = {"runtime": runtime}
        if message.task in self.with_data:
            extra["result"] = value
        self.emitter.emit_task("task-succeeded", message, self.source, extra)

    def failed(self, message: TaskMessage, runtime: float, error: BaseException | None) -> None:
        extra = {"runtime": runtime, "error": error_fields(error)}
        self.emitter.emit_task("task-failed", message, self.source, extra)

    def retried(
        self, message: TaskMessage, runtime: float, error: BaseException | None, eta: float
    ) -> None:
        extra = {"runtime": runtime, "error": error_fields(error), "eta": eta}
        self.emitter.emit_task("task-retried", message, self.source, extra)

    def cancelled(self, message: TaskMessage, runtime: float) -> None:
        self.emitter.emit_task("task-cancelled", message, self.source, {"runtime": runtime})

    def expired(self, message: TaskMessage) -> None:
        self.emitter.emit_task("task-expired", message, self.source)

    def dead_lettered(self, message: TaskMessage | None, queue: str, reason: str) -> None:
        if message is not None:
            extra = {"reason": reason[:_MAX_TEXT]}
            self.emitter.emit_task("task-dead-lettered", message, self.source, extra)
            return
        fields = {"queue": queue, "worker": self.source[0], "host": self.source[1]}
        fields["reason"] = reason[:_MAX_TEXT]
        self.emitter.emit("task-dead-lettered", fields)


class StatusSink(TaskWatch):
    """Keeps ``running`` and ``retrying`` states in the store (see aq.monitor.status)."""

    def __init__(self, writer: StatusWriter, worker: str, longest: float) -> None:
        self.writer = writer
        self.worker = worker
        #: Seconds a task here may run (the longest timeout; a day without one).
        self.longest = longest

    def started(self, message: TaskMessage) -> None:
        # Kept while it may still run (its timeout), then for result_ttl.
        self.writer.write(
            message.id, record("running", message, worker=self.worker), extra=self.longest
        )

    def retried(
        self, message: TaskMessage, runtime: float, error: BaseException | None, eta: float
    ) -> None:
        entry = record("retrying", message, eta=eta, error=error_fields(error))
        entry["attempt"] = message.attempt + 1
        self.writer.write(message.id, entry, eta)

    # A workflow step keeps no result under its own id (only the workflow's
    # outcome is kept, under its handle's), so its end is a state of its own;
    # the step that carries the handle's id leaves the end to that outcome.

    def succeeded(self, message: TaskMessage, runtime: float, value: Any) -> None:
        self._step_ended(message, "succeeded", None)

    def failed(self, message: TaskMessage, runtime: float, error: BaseException | None) -> None:
        self._step_ended(message, "failed", error)

    def cancelled(self, message: TaskMessage, runtime: float) -> None:
        self._step_ended(message, "cancelled", None)

    def _step_ended(self, message: TaskMessage, state: State, error: BaseException | None) -> None:
        flow = message.workflow
        if flow is None or flow.get("root") == message.id:
            return
        entry = record(state, message, worker=self.worker)
        if error is not None:
            entry["error"] = error_fields(error)
        self.writer.write(message.id, entry)

"""Settling a delivery: replies, retries, dead letters, and carrying workflows on.

The :class:`Settler` owns the last part of a message's life in a worker, once
its outcome is known (or it cannot run): the reply to the producer (kept in
the store too with ``result_ttl``), the retry republished with its delay, the
dead letter with its reason, and only then the ack. A workflow step's outcome
goes to the :class:`~aq.workflow.advance.Advancer` first, which starts what
comes next. Every step rides out a broker outage (:class:`HandOff`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aq.broker import Broker
from aq.errors import (
    AQError,
    ConfigurationError,
    MessageDecodeError,
    Retry,
    SerializationError,
    TaskExpired,
    TaskFailed,
)
from aq.logs import event
from aq.message import (
    Reply,
    ReplyKind,
    TaskMessage,
    encode_reply,
    error_payload,
    outcome_error,
    result_key,
)
from aq.middleware import Outcome
from aq.monitor.watch import TaskWatch
from aq.task import AnyTask
from aq.transport.base import Delivery
from aq.unique import UNIQUE_HEADER, finish_unique
from aq.worker.handoff import OUTAGE, HandOff
from aq.worker.retrying import apply_override
from aq.workflow.advance import Advancer

__all__ = ["Settler", "WorkflowStuck", "describe"]

log = logging.getLogger("aq.worker")
_MAX_REASON = 2000
_FINAL = frozenset(("result", "error", "end"))


class WorkflowStuck(Exception):
    """A step succeeded, but what comes next could not be started: a message that
    cannot be encoded, malformed workflow fields, no store for a join. The step
    fails with ``error``."""

    def __init__(self, error: AQError) -> None:
        super().__init__(str(error))
        self.error = error


class Settler:
    """Settles deliveries for one worker; see the module docstring."""

    def __init__(self, broker: Broker, handoff: HandOff) -> None:
        self.broker = broker
        self.transport = broker.transport
        self.codec = broker.codec
        self.handoff = handoff
        self.advancer = Advancer(broker)
        #: What is told of each outcome (events, states, metrics); None: nothing watches.
        self.watch: TaskWatch | None = None

    async def expire(self, message: TaskMessage, delivery: Delivery) -> None:
        """Tell the producer, and dead-letter a message whose ``expires`` time has passed."""
        event(log, logging.WARNING, "task.expired", task_id=message.id, name=message.task)
        if self.watch is not None:
            self.watch.expired(message)
        expired = outcome_error(TaskExpired, message.id, "expired before it ran")
        await self.reply(message, "error", error_payload(expired, with_traceback=False))
        await self.patiently(message, delivery.dead_letter, "expired before it ran")

    async def send_back(self, message: TaskMessage, delivery: Delivery, delay: float) -> None:
        """Publish ``message`` again, due ``delay`` seconds from now; then ack ``delivery``."""
        message.eta = time.time() + delay
        body = self.broker.encode(message)
        publish = self.transport.publish
        await self.patiently(
            message,
            lambda: publish(message.queue, body, priority=message.priority, eta=message.eta),
        )
        await self.patiently(message, delivery.ack)

    async def retry(
        self, task: AnyTask, message: TaskMessage, delivery: Delivery, outcome: Outcome
    ) -> None:
        error = outcome.error
        delay = error.delay if isinstance(error, Retry) and error.delay is not None else None
        if delay is None:
            delay = task.config.backoff.delay(message.attempt)
        if self.watch is not None:  # before it is sent, so its state lands before the next run's
            self.watch.retried(message, outcome.duration, error, time.time() + delay)
        apply_override(message, error)  # an aq.Retry(retries=...): its budget from now on
        message.attempt += 1
        await self.send_back(message, delivery, delay)
        event(
            log,
            logging.WARNING,
            "task.retried",
            task_id=message.id,
            name=message.task,
            attempt=message.attempt - 1,
            delay=delay,
            error=describe(error),
        )

    async def fail(
        self, message: TaskMessage, delivery: Delivery, outcome: Outcome, what: str
    ) -> None:
        error = outcome.error
        assert error is not None
        payload = error_payload(error)
        with contextlib.suppress(SerializationError):  # str fields: cannot fail, but be sure
            await self.reply(message, "error", payload)
        reason = f"{what} after {message.attempt} attempt(s): {describe(error)}"
        await self.patiently(message, delivery.dead_letter, reason[:_MAX_REASON])
        if self.watch is not None:
            self.watch.failed(message, outcome.duration, error)
        event(
            log,
            logging.ERROR,
            "task.failed",
            task_id=message.id,
            name=message.task,
            attempt=message.attempt,
            duration=outcome.duration,
            error=describe(error),
        )
        if log.isEnabledFor(logging.DEBUG):
            log.debug("traceback of task %s:\n%s", message.id, payload["traceback"])

    async def cancelled(
        self, message: TaskMessage, delivery: Delivery, error: BaseException, runtime: float = 0.0
    ) -> None:
        payload = error_payload(error, with_traceback=False)
        await self.reply(message, "error", payload, settle=delivery)
        if self.watch is not None:
            self.watch.cancelled(message, runtime)
        event(log, logging.INFO, "task.cancelled", task_id=message.id, name=message.task)

    async def reply(
        self,
        message: TaskMessage,
        kind: ReplyKind,
        payload: Any,
        seq: int = 0,
        settle: Delivery | None = None,
    ) -> None:
        """Send a reply (and keep it, if results are kept); then ack ``settle``, if given.

        Raises SerializationError, before anything is sent or settled, when
        ``payload`` cannot be encoded.
        """
        final = kind in _FINAL
        member = None
        if final and message.workflow is not None:
            member = _member_only(message.workflow) if kind == "result" else None
            if member is None:
                await self._advance(message, kind, payload, settle)
                return
            # A group member whose result goes straight to the handle: a plain reply.
        keep = self.broker.result_ttl is not None and final
        if message.reply_to is None and not keep and UNIQUE_HEADER not in message.headers:
            if settle is not None:
                await self.patiently(message, settle.ack)
            return
        reply = Reply(message.correlation_id or message.id, message.id, kind, payload, seq, member)
        body = self._encode(reply, message)
        if final and UNIQUE_HEADER in message.headers:
            await self.patiently(message, finish_unique, self.broker, message, body)
        if keep:
            ttl = self.broker.result_ttl
            assert ttl is not None
            store, key = self.broker.require_store("result_ttl"), result_key(message.id)
            await self.patiently(message, lambda: store.set(key, body, ttl=ttl))
        reply_to = message.reply_to
        if reply_to is None:
            if settle is not None:
                await self.patiently(message, settle.ack)
        elif settle is None and not final:  # progress and stream items: part of the run
            await self.transport.send_reply(reply_to, body)
        elif settle is None:
            await self.patiently(message, self.transport.send_reply, reply_to, body)
        else:
            await self.patiently(message, self.transport.reply_and_ack, settle, reply_to, body)

    def _encode(self, reply: Reply, message: TaskMessage) -> bytes:
        """A reply to ``message``, in the content type it came in; raises
        :class:`SerializationError` (when it cannot be, or is too large)."""
        return encode_reply(reply, self.codec, message.content_type)

    async def patiently(
        self, message: TaskMessage, step: Callable[..., Awaitable[None]], *args: Any
    ) -> None:
        """Run a hand-off step of ``message``, riding out a broker outage (HandOff)."""
        try:
            await step(*args)
        except OUTAGE as exc:  # not on the common path: no closure until it is needed
            await self.handoff.wait_out(message.id, message.task, lambda: step(*args), exc)

    async def _advance(
        self, message: TaskMessage, kind: ReplyKind, payload: Any, settle: Delivery | None
    ) -> None:
        """The outcome of a workflow step: carry the workflow on (or start its error
        callbacks), send the replies that brings for the handle, then ack ``settle``."""
        replies: list[Reply] = []
        advancer = self.advancer
        reply_to = message.reply_to

        async def send_now(reply: Reply) -> None:  # what a completed join brings
            body = self._encode(reply, message)
            await self._keep(reply, body)
            if reply_to is not None:
                await self.transport.send_reply(reply_to, body)

        async def advance() -> None:
            if kind == "error":
                replies[:] = [await advancer.failed(message, payload)]
                return
            try:
                value = None if kind == "end" else payload
                replies[:] = await advancer.succeeded(message, value, send_now)
            except (SerializationError, MessageDecodeError, ConfigurationError) as exc:
                raise WorkflowStuck(exc) from exc

        await self.patiently(message, advance)
        bodies = [self._encode(reply, message) for reply in replies]
        for reply, body in zip(replies, bodies, strict=True):
            await self.patiently(message, self._keep, reply, body)
        if reply_to is None or not bodies:
            if settle is not None:
                await self.patiently(message, settle.ack)
            return
        send = self.transport.send_reply
        for body in bodies[:-1]:
            await self.patiently(message, send, reply_to, body)
        if settle is None:
            await self.patiently(message, send, reply_to, bodies[-1])
        else:
            last = bodies[-1]
            await self.patiently(message, self.transport.reply_and_ack, settle, reply_to, last)

    async def _keep(self, reply: Reply, body: bytes) -> None:
        """With ``result_ttl``, keep a workflow's own outcome under its handle's id."""
        ttl = self.broker.result_ttl
        if ttl is not None and reply.member is None:
            store = self.broker.require_store("result_ttl")
            await store.set(result_key(reply.correlation_id), body, ttl=ttl)


def _member_only(workflow: dict[str, Any]) -> int | None:
    """The member index, if all a workflow step's result does is report to the
    handle as that member of its group (no callbacks, nothing after it)."""
    then: list[dict[str, Any]] = workflow.get("then") or []
    if len(then) != 1 or "link" in workflow:
        return None
    member: int | None = then[0].get("member")
    return member


def describe(error: BaseException | None) -> str:
    """``error`` in one line, for logs and dead-letter reasons."""
    if error is None:
        return "unknown error"
    if isinstance(error, TaskFailed):
        return f"{type(error).__name__}: {error.remote_message}"
    return f"{type(error).__name__}: {error}"

"""Sending task messages: encode, publish, and tell the monitors.

The :class:`Publisher` is the producer half of a :class:`aq.Broker`: it runs
the publish middleware, encodes a message (naming the argument that cannot be
encoded), publishes it, and, when the broker keeps results, writes the task's
``queued`` state in the same round trip as the publish (set only if no worker
has written a later state already: :mod:`aq.monitor.status`). With events on,
each message sent becomes a ``task-sent`` event.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aq.errors import AQError, SerializationError
from aq.message import TaskMessage
from aq.monitor.emitter import EventEmitter
from aq.monitor.status import lifetime, record, status_key
from aq.replies import ResultWaiter
from aq.task import AnyTask

if TYPE_CHECKING:
    from aq.broker import Broker

__all__ = ["Publisher"]


class Publisher:
    """Publishes the task messages of ``broker``; see the module docstring."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        #: Where ``task-sent`` events go, once events are on (``Broker(events=True)``).
        self.emitter: EventEmitter | None = None
        self._host = socket.gethostname()

    def encode(self, message: TaskMessage, task: AnyTask | None = None) -> bytes:
        """The message's bytes: in its content type, compressed as the call, else
        its task, else the broker asks; refused if over ``max_message_size``
        framed or decompressed (a worker would not read it)."""
        broker = self.broker
        compression = message.compression
        if compression is None:
            known = task or broker.tasks.get(message.task)
            compression = known.config.compression if known is not None else None
        try:
            body, size = broker.codec.encode(
                message.to_dict(), compression=compression, content_type=message.content_type
            )
        except SerializationError as exc:
            raise self._locate(message, task, exc) from exc
        size = max(size, len(body))
        if size > broker.max_message_size:
            raise SerializationError(
                f"the message for task {message.task!r} is {size} bytes, over the limit of "
                f"{broker.max_message_size} (raise Broker(max_message_size=...) or send a "
                "reference to the data instead)"
            )
        return body

    def _locate(
        self, message: TaskMessage, task: AnyTask | None, exc: SerializationError
    ) -> SerializationError:
        places: list[tuple[str, Any]] = [
            (task.parameter_name(i) if task else f"#{i}", v) for i, v in enumerate(message.args)
        ]
        places += list(message.kwargs.items())
        places += [(f"header {k}", v) for k, v in message.headers.items()]
        for label, value in places:
            try:
                self.broker.serializer.dumps(value)
            except SerializationError as inner:
                what = label if label.startswith("header ") else f"argument {label!r}"
                return SerializationError(
                    f"{what} of task {message.task!r} cannot be sent: {inner}"
                )
        return SerializationError(f"task {message.task!r} cannot be sent: {exc}")

    async def publish(self, message: TaskMessage, task: AnyTask | None = None) -> ResultWaiter:
        broker = self.broker
        for mw in broker.middleware:
            await mw.before_publish(message)
        body = self.encode(message, task)
        waiter = broker.register_waiter(message.correlation_id or message.id)
        publish = broker.transport.publish
        # The event's time: before any worker can have it.
        sent_at = time.time() if self.emitter is not None else 0.0
        if not broker.tracks_states:
            await publish(message.queue, body, priority=message.priority, eta=message.eta)
        else:
            await self._tracked(
                [message],
                [publish(message.queue, body, priority=message.priority, eta=message.eta)],
            )
        if self.emitter is not None:
            self._sent(message, task, sent_at)
        for mw in reversed(broker.middleware):
            await mw.after_publish(message)
        return waiter

    async def prepare(self, message: TaskMessage, task: AnyTask | None = None) -> bytes:
        for mw in self.broker.middleware:
            await mw.before_publish(message)
        return self.encode(message, task)

    async def publish_prepared(self, batch: Sequence[tuple[TaskMessage, bytes]]) -> None:
        broker = self.broker
        publish = broker.transport.publish
        sent_at = time.time() if self.emitter is not None else 0.0
        sends = [publish(m.queue, body, priority=m.priority, eta=m.eta) for m, body in batch]
        if not broker.tracks_states:
            outcomes = await asyncio.gather(*sends, return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
        else:
            await self._tracked([m for m, _ in batch], sends)
        if self.emitter is not None:
            for message, _ in batch:
                self._sent(message, None, sent_at)
        if broker.middleware:
            for message, _ in batch:
                for mw in reversed(broker.middleware):
                    await mw.after_publish(message)

    async def _tracked(self, messages: list[TaskMessage], sends: list[Any]) -> None:
        """Run ``sends`` with the ``queued`` states of ``messages`` written beside
        them (in the same pipeline on Redis); raise the first send's error,
        removing the states of the messages whose send failed."""
        broker = self.broker
        store, ttl = broker.require_store("result_ttl"), broker.result_ttl
        assert ttl is not None
        codec = broker.codec
        writes = [
            asyncio.ensure_future(
                store.set_if_absent(
                    status_key(m.id),
                    codec.dumps(record("queued", m, eta=m.eta)),
                    ttl=lifetime(ttl, m.eta),
                )
            )
            for m in messages
        ]
        try:
            if len(sends) == 1:  # one kiq(): no task more than the write's
                try:
                    sent: list[Any] = [await sends[0]]
                except Exception as exc:
                    sent = [exc]
            else:
                sent = await asyncio.gather(*sends, return_exceptions=True)
        except BaseException:  # cancelled: the states go too, whether it was sent or not
            for write in writes:
                write.cancel()
            await asyncio.gather(*writes, return_exceptions=True)
            raise
        wrote = await asyncio.gather(*writes, return_exceptions=True)
        failed = [o for o in sent if isinstance(o, BaseException)]
        if failed:
            unsent = [
                m
                for m, w, o in zip(messages, wrote, sent, strict=True)
                if w is True and isinstance(o, BaseException)
            ]
            with contextlib.suppress(AQError):
                await asyncio.gather(*(store.delete(status_key(m.id)) for m in unsent))
            raise failed[0]

    def _sent(self, message: TaskMessage, task: AnyTask | None, ts: float) -> None:
        emitter = self.emitter
        assert emitter is not None
        fields: dict[str, Any] = {
            "task_id": message.id,
            "name": message.task,
            "queue": message.queue,
            "attempt": message.attempt,
            "host": self._host,
        }
        if message.eta is not None:
            fields["eta"] = message.eta
        flow = message.workflow
        if flow is not None:
            fields["root"] = flow.get("root")
            fields["step"] = flow.get("step")
        if task is None:
            task = self.broker.tasks.get(message.task)
        if task is not None and task.config.event_data:
            fields["args"] = message.args
            fields["kwargs"] = message.kwargs
        emitter.emit("task-sent", fields, ts)

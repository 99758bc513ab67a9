"""Sending events without ever slowing the code that emits them.

:meth:`EventEmitter.emit` only appends to a buffer (a task event as a tuple
of what it needs, made into its JSON object only when its batch is encoded,
off the task's path). One background loop, woken by the first event after a
quiet spell, lets events gather for ``interval`` (50 ms), then sends them in
batches of at most ``max_batch``: under load the broker sees about twenty
messages a second (more only past ``max_batch`` events each), not one per
task. The buffer holds at most ``max_buffer`` events; when the broker is slow or gone,
the oldest are dropped and counted (``dropped``), so memory stays bounded and
a task never waits for an event. Events are best effort by design: docs/
monitoring.md says what a watcher may miss.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import time
from collections import deque
from typing import Any

from aq import background
from aq.errors import SerializationError
from aq.logs import event
from aq.message import TaskMessage
from aq.monitor.wire import encode_events
from aq.serializer import Serializer
from aq.transport.base import Transport

__all__ = ["EventEmitter", "TaskEvent", "worker_id"]

log = logging.getLogger("aq.events")

DEFAULT_MAX_BUFFER = 10_000
DEFAULT_MAX_BATCH = 200
#: Seconds events gather before a batch is sent.
DEFAULT_INTERVAL = 0.05
#: Failed sends in a row after which the batch in front is dropped.
_MAX_FAILURES = 10
_CLOSE_TIMEOUT = 2.0
_WARN_EVERY = 30.0
_workers = itertools.count(1)


def worker_id() -> str:
    """A name for a new worker in this process: ``host.pid``, then ``host.pid.2``..."""
    n = next(_workers)
    base = f"{socket.gethostname()}.{os.getpid()}"
    return base if n == 1 else f"{base}.{n}"


def _reset_worker_ids() -> None:
    global _workers
    _workers = itertools.count(1)


os.register_at_fork(after_in_child=_reset_worker_ids)


#: A task event as it waits to be sent: type, time, task id, name, queue,
#: attempt, workflow fields, (worker, host), extra fields.
TaskEvent = tuple[
    str,
    float,
    str,
    str,
    str,
    int,
    "dict[str, Any] | None",
    tuple[str, str],
    "dict[str, Any] | None",
]


def _fields(item: dict[str, Any] | TaskEvent) -> dict[str, Any]:
    """An event's JSON object."""
    if isinstance(item, dict):
        return item
    kind, ts, task_id, name, queue, attempt, flow, (worker, host), extra = item
    fields = {
        "type": kind,
        "ts": ts,
        "task_id": task_id,
        "name": name,
        "queue": queue,
        "attempt": attempt,
        "worker": worker,
        "host": host,
    }
    if flow is not None:
        fields["root"] = flow.get("root")
        fields["step"] = flow.get("step")
    if extra:
        fields.update(extra)
    return fields


class EventEmitter:
    """Buffers events and sends them in batches on ``transport``.

    Args:
        transport: where events go (:meth:`Transport.publish_events`).
        serializer: the codec of the batches.
        max_buffer: the most events held while sending is slow; older ones are dropped.
        max_batch: the most events in one broker message.
        interval: seconds events gather before they are sent (so an emit costs
            an append, not a wake-up of the sending loop).
    """

    def __init__(
        self,
        transport: Transport,
        serializer: Serializer,
        *,
        max_buffer: int = DEFAULT_MAX_BUFFER,
        max_batch: int = DEFAULT_MAX_BATCH,
        interval: float = DEFAULT_INTERVAL,
    ) -> None:
        self.transport = transport
        self.serializer = serializer
        self.max_batch = max_batch
        self.interval = interval
        #: Events dropped: the buffer was full (the broker slow or gone), or one
        #: could not be encoded.
        self.dropped = 0
        #: Events handed to the broker.
        self.sent = 0
        self._buffer: deque[dict[str, Any] | TaskEvent] = deque(maxlen=max_buffer)
        self._pending = False  # events wait and the loop has been woken for them
        self._wake: asyncio.Event | None = None
        self._hurry: asyncio.Event | None = None  # a flush waits: send without gathering
        #: Flushes waiting: (how many events had been queued, its future).
        self._flushes: list[tuple[int, asyncio.Future[None]]] = []
        self._queued = 0  # events ever queued; every one ends sent, dropped or buffered
        self._failures = 0  # sends of the batch in front that failed in a row
        self._loop_task: asyncio.Task[None] | None = None
        self._warned = 0.0

    def emit(self, kind: str, fields: dict[str, Any], ts: float | None = None) -> None:
        """Queue one event of type ``kind`` that happened at ``ts`` (default: now);
        ``fields`` is taken over, not copied."""
        fields["type"] = kind
        fields["ts"] = time.time() if ts is None else ts
        self._queue(fields)

    def emit_task(
        self,
        kind: str,
        message: TaskMessage,
        source: tuple[str, str],
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Queue the task event ``kind`` of ``message``, now, from ``source``
        (worker id, host); ``extra`` adds fields. What it needs of the message
        is read now: the message may change before the event is sent."""
        self._queue(
            (kind, time.time(), message.id, message.task, message.queue, message.attempt,
             message.workflow, source, extra)
        )  # fmt: skip

    def _queue(self, item: dict[str, Any] | TaskEvent) -> None:
        buffer = self._buffer
        if len(buffer) == buffer.maxlen:
            self.dropped += 1
        buffer.append(item)
        self._queued += 1
        if not self._pending and self._wake is not None:
            self._pending = True
            self._wake.set()

    def start(self) -> None:
        """Start sending (in the running event loop)."""
        if self._loop_task is None:
            self._wake, self._hurry = asyncio.Event(), asyncio.Event()
            self._pending = bool(self._buffer)
            if self._pending:
                self._wake.set()
            self._loop_task = background.start("aq-events", self._send_loop)

    async def flush(self, timeout: float = _CLOSE_TIMEOUT) -> None:
        """Send every event emitted so far now, waiting at most ``timeout`` seconds."""
        if self._loop_task is None or self._settled() >= self._queued:
            return
        assert self._wake is not None
        assert self._hurry is not None
        done = asyncio.get_running_loop().create_future()
        self._flushes.append((self._queued, done))
        self._wake.set()
        self._hurry.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await asyncio.shield(done)

    async def close(self) -> None:
        """Send what is buffered (for at most a couple of seconds), then stop."""
        task, self._loop_task = self._loop_task, None
        if task is None:
            return
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                while self._buffer:
                    await self._send_one()
        self._release_flushes(everyone=True)

    async def _send_loop(self) -> None:
        wake, hurry = self._wake, self._hurry
        assert wake is not None
        assert hurry is not None
        while True:
            await wake.wait()
            if not hurry.is_set():  # let a batch gather rather than send each event alone
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.interval):
                        await hurry.wait()
            wake.clear()
            hurry.clear()
            self._pending = False
            while self._buffer:
                try:
                    await self._send_one()
                except Exception as exc:  # best effort: keep what fits, try again later
                    self._warn(exc)
                    await asyncio.sleep(1.0)
                self._release_flushes()
            self._release_flushes()

    def _settled(self) -> int:
        """How many of the events ever queued were sent or dropped."""
        return self.sent + self.dropped

    def _release_flushes(self, everyone: bool = False) -> None:
        """Resolve the flushes whose events are all sent or dropped (all, when
        the emitter closes)."""
        settled, waiting = self._settled(), []
        for upto, done in self._flushes:
            if everyone or settled >= upto:
                if not done.done():
                    done.set_result(None)
            else:
                waiting.append((upto, done))
        self._flushes = waiting

    async def _send_one(self) -> None:
        buffer, size = self._buffer, min(len(self._buffer), self.max_batch)
        batch = [buffer.popleft() for _ in range(size)]
        body, count = self._encode(batch)
        if body is None:
            return
        try:
            await self.transport.publish_events(body)
        except BaseException as exc:
            self._failures += 1
            if isinstance(exc, Exception) and self._failures >= _MAX_FAILURES:
                self._failures = 0  # this batch will not go (too large?): not all the rest too
                self.dropped += size
                raise
            room = max(0, (buffer.maxlen or 0) - len(buffer))
            kept = batch[size - room :] if room < size else batch
            self.dropped += size - len(kept)
            buffer.extendleft(reversed(kept))
            raise
        self._failures = 0
        self.sent += count

    def _encode(self, batch: list[dict[str, Any] | TaskEvent]) -> tuple[bytes | None, int]:
        """The batch's body and how many events it holds; an event that cannot
        be encoded (opted-in data) is dropped alone, the rest go."""
        events = [_fields(item) for item in batch]
        try:
            return encode_events(events, self.serializer), len(events)
        except SerializationError:
            pass
        good = []
        for fields in events:
            try:
                self.serializer.dumps(fields)
            except SerializationError as exc:
                self.dropped += 1
                self._warn(exc)
            else:
                good.append(fields)
        return (encode_events(good, self.serializer) if good else None), len(good)

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned >= _WARN_EVERY:
            self._warned = now
            event(
                log,
                logging.WARNING,
                "events.unsent",
                error=f"{type(exc).__name__}: {exc}",
                buffered=len(self._buffer),
                dropped=self.dropped,
            )

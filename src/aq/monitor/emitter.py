"""Sending events without ever slowing the code that emits them.

:meth:`EventEmitter.emit` only appends a dict to a buffer. One background
loop sends what has gathered as one batch (at most ``max_batch`` events) and,
while that send is in flight, more gather for the next: under load, batches
grow and the broker sees few messages; when idle, an event leaves at once. The
buffer holds at most ``max_buffer`` events; when the broker is slow or gone,
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
from aq.errors import AQError, SerializationError
from aq.logs import event
from aq.monitor.wire import encode_events
from aq.serializer import Serializer
from aq.transport.base import Transport

__all__ = ["EventEmitter", "worker_id"]

log = logging.getLogger("aq.events")

DEFAULT_MAX_BUFFER = 10_000
DEFAULT_MAX_BATCH = 500
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


class EventEmitter:
    """Buffers events and sends them in batches on ``transport``.

    Args:
        transport: where events go (:meth:`Transport.publish_events`).
        serializer: the codec of the batches.
        max_buffer: the most events held while sending is slow; older ones are dropped.
        max_batch: the most events in one broker message.
    """

    def __init__(
        self,
        transport: Transport,
        serializer: Serializer,
        *,
        max_buffer: int = DEFAULT_MAX_BUFFER,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        self.transport = transport
        self.serializer = serializer
        self.max_batch = max_batch
        #: Events dropped because the buffer was full (the broker slow or gone).
        self.dropped = 0
        #: Events handed to the broker.
        self.sent = 0
        self._buffer: deque[dict[str, Any]] = deque(maxlen=max_buffer)
        self._wake: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._warned = 0.0

    def emit(self, kind: str, fields: dict[str, Any], ts: float | None = None) -> None:
        """Queue one event of type ``kind`` that happened at ``ts`` (default: now);
        ``fields`` is taken over, not copied."""
        fields["type"] = kind
        fields["ts"] = time.time() if ts is None else ts
        buffer = self._buffer
        if len(buffer) == buffer.maxlen:
            self.dropped += 1
        buffer.append(fields)
        if self._idle is not None:
            self._idle.clear()
        wake = self._wake
        if wake is not None and not wake.is_set():
            wake.set()

    def start(self) -> None:
        """Start sending (in the running event loop)."""
        if self._loop_task is None:
            self._wake, self._idle = asyncio.Event(), asyncio.Event()
            if self._buffer:
                self._wake.set()
            else:
                self._idle.set()
            self._loop_task = background.start("aq-events", self._send_loop)

    async def flush(self, timeout: float = _CLOSE_TIMEOUT) -> None:
        """Wait (at most ``timeout`` seconds) until every event emitted so far is sent."""
        idle = self._idle
        if idle is not None and self._loop_task is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await idle.wait()

    async def close(self) -> None:
        """Send what is buffered (for at most a couple of seconds), then stop."""
        task, self._loop_task = self._loop_task, None
        if task is None:
            return
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        with contextlib.suppress(AQError, TimeoutError):
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                while self._buffer:
                    await self._send_one()

    async def _send_loop(self) -> None:
        wake = self._wake
        assert wake is not None
        idle = self._idle
        assert idle is not None
        while True:
            await wake.wait()
            wake.clear()
            while self._buffer:
                try:
                    await self._send_one()
                except AQError as exc:  # best effort: keep what fits, try again later
                    self._warn(exc)
                    await asyncio.sleep(1.0)
            idle.set()

    async def _send_one(self) -> None:
        buffer, size = self._buffer, min(len(self._buffer), self.max_batch)
        batch = [buffer.popleft() for _ in range(size)]
        try:
            body = encode_events(batch, self.serializer)
        except SerializationError as exc:  # opted-in data that cannot be encoded: drop it
            self.dropped += size
            self._warn(exc)
            return
        try:
            await self.transport.publish_events(body)
        except BaseException:
            room = max(0, (buffer.maxlen or 0) - len(buffer))
            kept = batch[size - room :] if room < size else batch
            self.dropped += size - len(kept)
            buffer.extendleft(reversed(kept))
            raise
        self.sent += size

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

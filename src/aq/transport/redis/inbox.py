"""Reading streams addressed to this process: a producer's replies, and control.

Both inboxes read a stream from the last id they saw, with blocking XREAD, and
simply read again after a lost connection: nothing is removed by reading, so
nothing read-but-not-received is lost. The reply inbox also keeps its
liveness key fresh (workers reply only while it exists) and trims what it has
received; the control inbox starts an hour back, so a worker that starts after
a cancellation still honours it. The event inbox starts at the newest entry
of the capped event stream; when it reads slower than events come, the
entries trimmed meanwhile are simply not seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

from redis import exceptions as redis_errors

from aq import background
from aq.errors import BrokerError
from aq.transport.base import Inbox
from aq.transport.kit import ReconnectDelay
from aq.transport.redis.connection import CONNECTION_ERRORS, raise_if_cancelling, retrying
from aq.transport.redis.context import RedisContext

__all__ = ["ControlInbox", "EventInbox", "ReplyInbox"]

log = logging.getLogger("aq.redis")

_BLOCK_MS = 1_000


class _StreamInbox(Inbox):
    """Reads one stream from ``_last`` onwards, surviving outages."""

    def __init__(self, context: RedisContext, stream: str, start_id: str) -> None:
        self._context = context
        self._stream = stream
        self._last = start_id
        self._buffer: deque[bytes] = deque()
        self._delays = ReconnectDelay()

    async def _read(self) -> Any:
        """One blocking read from ``_last`` on."""
        return await self._context.client.xread(
            {self._stream: self._last}, count=1000, block=_BLOCK_MS
        )

    async def _after_outage(self) -> None:
        """Called after a read failed because the connection was lost."""

    async def get(self) -> bytes:
        delays = self._delays
        while not self._buffer:
            try:
                result = await self._read()
            except CONNECTION_ERRORS as exc:
                raise_if_cancelling()
                log.warning("%s lost its connection (%s); reconnecting", self._stream, exc)
                await delays.wait()
                with contextlib.suppress(BrokerError):
                    await self._after_outage()
                continue
            raise_if_cancelling()
            delays.reset()
            for _stream, entries in result or ():
                for entry_id, fields in entries:
                    self._last = entry_id
                    self._buffer.append(fields.get(b"b", b""))
        return self._buffer.popleft()

    async def close(self) -> None:
        self._buffer.clear()


class ReplyInbox(_StreamInbox):
    """A producer's reply stream, kept alive by refreshing its liveness key."""

    def __init__(self, context: RedisContext, inbox_id: str) -> None:
        stream, self._alive = context.keys.inbox(inbox_id)
        super().__init__(context, stream, "0-0")
        self.address = inbox_id
        self._ttl_ms = int(context.settings.reply_ttl * 1000)
        self._refresher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._mark_alive()
        self._refresher = background.start("aq-inbox-refresh", self._refresh)

    async def _mark_alive(self) -> None:
        client = self._context.client

        async def mark() -> Any:
            # Replies expire with the liveness key (the reply scripts cap them at
            # its time left), so both are extended together.
            async with client.pipeline(transaction=False) as pipe:
                pipe.set(self._alive, b"1", px=self._ttl_ms)
                pipe.pexpire(self._stream, self._ttl_ms)
                return await pipe.execute()

        await retrying("open the reply inbox", mark, self._context.settings.publish_timeout)

    async def _refresh(self) -> None:
        interval = self._context.settings.reply_ttl / 3
        while True:
            raise_if_cancelling()
            await asyncio.sleep(interval)
            try:
                await self._mark_alive()
            except BrokerError as exc:
                log.warning("could not refresh the reply inbox: %s", exc)

    async def _read(self) -> Any:
        if self._last == "0-0":
            return await super()._read()
        # What was received before is no longer needed: trim it in the same round
        # trip as the next read, which then waits at once.
        async with self._context.client.pipeline(transaction=False) as pipe:
            pipe.xtrim(self._stream, minid=self._last, approximate=False)
            pipe.xread({self._stream: self._last}, count=1000, block=_BLOCK_MS)
            _, result = await pipe.execute()
        return result

    async def _after_outage(self) -> None:
        await self._mark_alive()  # it may have expired during the outage

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.gather(self._refresher, return_exceptions=True)
        with contextlib.suppress(*CONNECTION_ERRORS, redis_errors.RedisError):
            await self._context.client.delete(self._stream, self._alive)
        await super().close()


class ControlInbox(_StreamInbox):
    """The control stream, read from ``start_id`` onwards."""

    def __init__(self, context: RedisContext, start_id: str) -> None:
        super().__init__(context, context.keys.control, start_id)
        self.address = context.keys.control


class EventInbox(_StreamInbox):
    """The event stream, from the entry after the newest one at subscription."""

    def __init__(self, context: RedisContext, start_id: str) -> None:
        super().__init__(context, context.keys.events, start_id)
        self.address = context.keys.events

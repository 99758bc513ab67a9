"""Reading the events of the cluster as they happen.

:class:`EventStream` subscribes to the broker's event channel (from the
moment it is entered) and yields :class:`~aq.monitor.wire.Event` objects one
at a time. A batch that cannot be decoded is skipped and counted, never a
reason to stop. What it misses while it reads slowly is what the broker
dropped for it (docs/monitoring.md).
"""

from __future__ import annotations

import logging
from collections import deque
from types import TracebackType
from typing import TYPE_CHECKING, Self

from aq.errors import MessageDecodeError
from aq.logs import event
from aq.monitor.wire import Event, decode_events
from aq.transport.base import Inbox

if TYPE_CHECKING:
    from aq.broker import Broker

__all__ = ["EventStream"]

log = logging.getLogger("aq.events")


class EventStream:
    """``async with broker.subscribe_events() as events: async for event in events: ...``"""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        #: Batches skipped because they could not be decoded.
        self.skipped = 0
        self._inbox: Inbox | None = None
        self._events: deque[Event] = deque()

    async def __aenter__(self) -> Self:
        await self.broker.connect()
        self._inbox = await self.broker.transport.subscribe_events()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        inbox, self._inbox = self._inbox, None
        if inbox is not None:
            await inbox.close()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event:
        return await self.next()

    async def next(self) -> Event:
        """The next event (waiting for one)."""
        inbox = self._inbox
        if inbox is None:
            raise RuntimeError("use the event stream inside `async with`")
        while not self._events:
            body = await inbox.get()
            try:
                self._events.extend(decode_events(body, self.broker.codec))
            except MessageDecodeError as exc:
                self.skipped += 1
                event(log, logging.WARNING, "events.skipped", reason=str(exc))
        return self._events.popleft()

"""The in-process ``memory://`` transport.

A real broker that lives inside one Python process: priority queues, delayed
delivery, unacked tracking with requeue on consumer close, dead letters, reply
inboxes and a control bus, with the same semantics the Redis and RabbitMQ
transports provide. Its state is a :class:`~aq.transport.memory.hub.Hub`
shared by every transport on the same URL. Nothing polls: a consumer with
room takes the next message when asked, and otherwise waits on a future that
a publish, a requeue or the next due time wakes.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from aq.errors import ConfigurationError
from aq.transport.admin import DeadLetter
from aq.transport.base import EVENT_BACKLOG, Consumer, Inbox, Transport
from aq.transport.kit import BufferedConsumer, OnceDelivery, connected
from aq.transport.kit.consumer import wake
from aq.transport.memory.admin import MemoryAdmin
from aq.transport.memory.hub import (
    Entry,
    EventBuffer,
    Hub,
    MemoryQueue,
    attach,
    detach,
    hub_name,
    next_sequence,
)
from aq.transport.memory.store import MemoryStore

__all__ = ["MemoryTransport"]


class _MemoryDelivery(OnceDelivery):
    __slots__ = ("_entry", "_hub", "_q")

    def __init__(self, consumer: _MemoryConsumer, q: MemoryQueue, entry: Entry) -> None:
        super().__init__(consumer, entry.body, q.name, entry.delivery_count)
        self._hub = consumer.hub
        self._q = q
        self._entry = entry

    def mark_settled(self) -> None:
        self._q.unacked -= 1
        super().mark_settled()

    async def ack(self) -> None:
        self._claim()

    async def requeue(self) -> None:
        if self._claim():
            self._q.push_front(self._entry)

    async def dead_letter(self, reason: str) -> None:
        if self._claim():
            letter = DeadLetter(
                self._q.name, self._entry.body, reason, time.time(), str(next_sequence())
            )
            (self._q.home or self._q).dead.append(letter)

    async def isolate(self) -> None:
        if self._claim():
            self._hub.isolation_queue(self._q.name).push(Entry(self._entry.body, 0))

    def abandon(self) -> None:
        self.release()

    def release(self) -> None:
        """Return the message on shutdown; this delivery does not count."""
        if self._claim():
            self._entry.delivery_count -= 1
            self._q.push_front(self._entry)


class _MemoryConsumer(BufferedConsumer[_MemoryDelivery]):
    """Takes a message from the hub whenever asked and room allows."""

    def __init__(self, hub: Hub, queues: list[MemoryQueue], prefetch: int) -> None:
        super().__init__(prefetch)
        self.hub = hub
        self.queues = queues
        self._turn = 0
        self._room: asyncio.Future[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._next_due: float | None = None
        for q in queues:
            q.consumers += 1

    def _take(self) -> float | None:
        """Hand out the next ready message, if any; else the next due time, if any."""
        now = time.time()
        next_due: float | None = None
        n = len(self.queues)
        for i in range(n):
            q = self.queues[(self._turn + i) % n]
            due = q.promote_due(now) if q.delayed else None
            if due is not None and (next_due is None or due < next_due):
                next_due = due
            if q.ready:
                self._turn = (self._turn + i + 1) % n
                _, _, entry = heapq.heappop(q.ready)
                entry.delivery_count += 1
                q.unacked += 1
                self.hand_out(_MemoryDelivery(self, q, entry))
                return None
        return next_due

    def _fill(self) -> bool:
        if self.holding >= self.prefetch:
            return False
        self._next_due = self._take()
        return bool(self._ready)

    async def _wait_for_arrival(self) -> None:
        loop = asyncio.get_running_loop()
        if self.holding >= self.prefetch:
            self._room = loop.create_future()
            await self._room
            return
        next_due = self._next_due
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiter = waiter
        for q in self.queues:
            q.waiters.append(waiter)
        timer = None
        if next_due is not None:
            timer = loop.call_at(loop.time() + max(0.0, next_due - time.time()), wake, waiter)
        try:
            await waiter
        finally:
            if timer is not None:
                timer.cancel()
            for q in self.queues:
                with contextlib.suppress(ValueError):
                    q.waiters.remove(waiter)

    def _forgotten(self, delivery: _MemoryDelivery) -> None:
        wake(self._room)

    async def close(self) -> None:
        if not self._stop_handing_out():
            return
        for delivery in list(self._unsettled):
            delivery.release()
        for q in self.queues:
            q.consumers -= 1
        wake(self._room)
        wake(self._waiter)


class _Source(Protocol):
    async def get(self) -> bytes: ...


class _MemoryInbox(Inbox):
    def __init__(self, address: str, queue: _Source, on_close: Callable[[], object]) -> None:
        self.address = address
        self._queue = queue
        self._on_close = on_close

    async def get(self) -> bytes:
        return await self._queue.get()

    async def close(self) -> None:
        self._on_close()


class MemoryTransport(Transport):
    """The in-process broker; see the module docstring."""

    in_process = True

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(url)
        if options:
            raise ConfigurationError(
                f"the {', '.join(sorted(options))} option(s) do not apply to memory:// brokers"
            )
        self._name = hub_name(url)
        self._hub: Hub | None = None
        self._admin = MemoryAdmin(lambda: self.hub)

    @property
    def hub(self) -> Hub:
        return connected(self._hub, "memory transport")

    @property
    def admin(self) -> MemoryAdmin:
        return self._admin

    def store(self) -> MemoryStore:
        return MemoryStore(lambda: self.hub)

    async def connect(self) -> None:
        if self._hub is None:
            self._hub = attach(self._name)

    async def close(self) -> None:
        hub, self._hub = self._hub, None
        if hub is not None:
            detach(self._name, hub)

    async def publish(
        self, queue: str, body: bytes, *, priority: int = 0, eta: float | None = None
    ) -> None:
        q = (self._hub or self.hub).queue(queue)  # self.hub raises if not connected
        entry = Entry(body, priority)
        if eta is not None and eta > time.time():
            q.push_delayed(entry, eta)
        else:
            q.push(entry)

    async def open_consumer(self, queues: list[str], prefetch: int, isolated: bool) -> Consumer:
        hub = self.hub
        pick = hub.isolation_queue if isolated else hub.queue
        return _MemoryConsumer(hub, [pick(name) for name in queues], prefetch)

    async def open_inbox(self) -> Inbox:
        hub = self.hub
        address = f"memory-inbox:{uuid.uuid4().hex}"
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        hub.inboxes[address] = queue
        return _MemoryInbox(address, queue, lambda: hub.inboxes.pop(address, None))

    async def send_reply(self, address: str, body: bytes) -> None:
        inbox = (self._hub or self.hub).inboxes.get(address)
        if inbox is not None:
            inbox.put_nowait(body)

    async def broadcast(self, body: bytes) -> None:
        for subscriber in self.hub.control:
            subscriber.put_nowait(body)

    async def subscribe_control(self) -> Inbox:
        hub = self.hub
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        hub.control.add(queue)
        return _MemoryInbox("memory-control", queue, lambda: hub.control.discard(queue))

    async def publish_events(self, body: bytes) -> None:
        for subscriber in self.hub.events:
            subscriber.put(body)

    async def subscribe_events(self) -> Inbox:
        hub = self.hub
        buffer = EventBuffer(EVENT_BACKLOG)
        hub.events.add(buffer)
        return _MemoryInbox("memory-events", buffer, lambda: hub.events.discard(buffer))

"""The in-process ``memory://`` broker.

A real broker that lives inside one Python process: priority queues, delayed
delivery, unacked tracking with requeue on consumer close, dead letters, reply
inboxes and a control bus, with the same semantics the Redis and RabbitMQ
transports provide. Every :class:`MemoryTransport` opened on the same URL
(``memory://`` or ``memory://name``) shares one :class:`_Hub` while at least one
of them is connected. Nothing polls: consumers wait on futures that a publish,
a requeue or the next due time wakes.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aq.errors import BrokerError
from aq.transport.base import Consumer, DeadLetter, Delivery, Inbox, QueueStats, Transport

__all__ = ["MemoryTransport"]

_sequence = itertools.count()


@dataclass(slots=True)
class _Entry:
    body: bytes
    priority: int
    delivery_count: int = 0


@dataclass(slots=True)
class _Queue:
    name: str
    #: The queue whose dead letters and stats this one's are (itself, or for an
    #: isolation queue the queue it isolates for).
    home: _Queue | None = None
    ready: list[tuple[int, int, _Entry]] = field(default_factory=list)
    delayed: list[tuple[float, int, _Entry]] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)
    unacked: int = 0
    consumers: int = 0

    def push(self, entry: _Entry) -> None:
        heapq.heappush(self.ready, (-entry.priority, next(_sequence), entry))
        self.wake()

    def push_front(self, entry: _Entry) -> None:
        # Requeued messages go ahead of others of the same priority.
        heapq.heappush(self.ready, (-entry.priority, -next(_sequence), entry))
        self.wake()

    def wake(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def promote_due(self, now: float) -> float | None:
        """Move due delayed entries to ready; return the next due time, if any."""
        while self.delayed and self.delayed[0][0] <= now:
            _, _, entry = heapq.heappop(self.delayed)
            self.push(entry)
        return self.delayed[0][0] if self.delayed else None


class _Hub:
    def __init__(self) -> None:
        self.queues: dict[str, _Queue] = {}
        self.isolation: dict[str, _Queue] = {}
        self.inboxes: dict[str, asyncio.Queue[bytes]] = {}
        self.control: set[asyncio.Queue[bytes]] = set()
        self.results: dict[str, tuple[float, bytes]] = {}
        self.users = 0

    def queue(self, name: str) -> _Queue:
        q = self.queues.get(name)
        if q is None:
            q = self.queues[name] = _Queue(name)
        return q

    def isolation_queue(self, name: str) -> _Queue:
        q = self.isolation.get(name)
        if q is None:
            q = self.isolation[name] = _Queue(name, home=self.queue(name))
        return q


_hubs: dict[str, _Hub] = {}


class _MemoryDelivery(Delivery):
    __slots__ = ("_consumer", "_entry", "_hub", "_q", "_settled")

    def __init__(self, consumer: _MemoryConsumer, q: _Queue, entry: _Entry) -> None:
        super().__init__(entry.body, q.name, entry.delivery_count)
        self._hub = consumer.hub
        self._consumer = consumer
        self._q = q
        self._entry = entry
        self._settled = False

    def _settle(self) -> bool:
        if self._settled:
            return False
        self._settled = True
        self._q.unacked -= 1
        self._consumer.settled(self)
        return True

    async def ack(self) -> None:
        self._settle()

    async def requeue(self) -> None:
        if self._settle():
            self._q.push_front(self._entry)

    async def dead_letter(self, reason: str) -> None:
        if self._settle():
            letter = DeadLetter(
                self._q.name, self._entry.body, reason, time.time(), str(next(_sequence))
            )
            (self._q.home or self._q).dead.append(letter)

    async def isolate(self) -> None:
        if self._settle():
            self._hub.isolation_queue(self._q.name).push(_Entry(self._entry.body, 0))

    def abandon(self) -> None:
        self.release()

    def release(self) -> None:
        """Return the message on shutdown; this delivery does not count."""
        if self._settle():
            self._entry.delivery_count -= 1
            self._q.push_front(self._entry)


class _MemoryConsumer(Consumer):
    def __init__(self, hub: _Hub, queues: list[_Queue], prefetch: int) -> None:
        self.hub = hub
        self.queues = queues
        self.prefetch = prefetch
        self.unsettled: set[_MemoryDelivery] = set()
        self._turn = 0
        self._closed = False
        self._room: asyncio.Future[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        for q in queues:
            q.consumers += 1

    def _take(self) -> tuple[_MemoryDelivery | None, float | None]:
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
                delivery = _MemoryDelivery(self, q, entry)
                self.unsettled.add(delivery)
                return delivery, None
        return None, next_due

    async def get(self) -> Delivery:
        loop = asyncio.get_running_loop()
        while True:
            if self._closed:
                raise BrokerError("consumer is closed")
            if len(self.unsettled) >= self.prefetch:
                self._room = loop.create_future()
                await self._room
                continue
            delivery, next_due = self._take()
            if delivery is not None:
                return delivery
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiter = waiter
            for q in self.queues:
                q.waiters.append(waiter)
            timer = None
            if next_due is not None:
                timer = loop.call_at(loop.time() + max(0.0, next_due - time.time()), _wake, waiter)
            try:
                await waiter
            finally:
                if timer is not None:
                    timer.cancel()
                for q in self.queues:
                    with contextlib.suppress(ValueError):
                        q.waiters.remove(waiter)

    def settled(self, delivery: _MemoryDelivery) -> None:
        self.unsettled.discard(delivery)
        if self._room is not None:
            _wake(self._room)
            self._room = None

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for delivery in list(self.unsettled):
            delivery.release()
        for q in self.queues:
            q.consumers -= 1
        for pending in (self._room, self._waiter):
            if pending is not None:
                _wake(pending)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _MemoryInbox(Inbox):
    def __init__(
        self, address: str, queue: asyncio.Queue[bytes], on_close: Callable[[], object]
    ) -> None:
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

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._name = url.removeprefix("memory://").strip("/")
        self._hub: _Hub | None = None

    @property
    def hub(self) -> _Hub:
        if self._hub is None:
            raise BrokerError("the memory transport is not connected; call connect() first")
        return self._hub

    async def connect(self) -> None:
        if self._hub is not None:
            return
        hub = _hubs.get(self._name)
        if hub is None:
            hub = _hubs[self._name] = _Hub()
        hub.users += 1
        self._hub = hub

    async def close(self) -> None:
        hub, self._hub = self._hub, None
        if hub is None:
            return
        hub.users -= 1
        if hub.users == 0 and _hubs.get(self._name) is hub:
            del _hubs[self._name]

    async def publish(
        self, queue: str, body: bytes, *, priority: int = 0, eta: float | None = None
    ) -> None:
        q = self.hub.queue(queue)
        entry = _Entry(body, priority)
        if eta is not None and eta > time.time():
            heapq.heappush(q.delayed, (eta, next(_sequence), entry))
            q.wake()  # a waiting consumer re-arms its timer for the new due time
        else:
            q.push(entry)

    async def consume(
        self, queues: Sequence[str], prefetch: int, *, isolated: bool = False
    ) -> Consumer:
        if not queues:
            raise BrokerError("consume() needs at least one queue")
        hub = self.hub
        pick = hub.isolation_queue if isolated else hub.queue
        return _MemoryConsumer(hub, [pick(name) for name in queues], max(1, prefetch))

    async def open_inbox(self) -> Inbox:
        hub = self.hub
        address = f"memory-inbox:{uuid.uuid4().hex}"
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        hub.inboxes[address] = queue
        return _MemoryInbox(address, queue, lambda: hub.inboxes.pop(address, None))

    async def send_reply(self, address: str, body: bytes) -> None:
        inbox = self.hub.inboxes.get(address)
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

    async def stats(self, queue: str) -> QueueStats:
        q = self.hub.queue(queue)
        isolation = self.hub.isolation.get(queue)
        isolated = len(isolation.ready) + isolation.unacked if isolation is not None else 0
        return QueueStats(
            queue, len(q.ready), len(q.delayed), q.unacked, len(q.dead), q.consumers, isolated
        )

    async def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        return self.hub.queue(queue).dead[:limit]

    async def purge(self, queue: str) -> int:
        count = 0
        for q in (self.hub.queue(queue), self.hub.isolation.get(queue)):
            if q is not None:
                count += len(q.ready) + len(q.delayed)
                q.ready.clear()
                q.delayed.clear()
        return count

    async def requeue_dead(self, queue: str, ids: Sequence[str] | None = None) -> int:
        q = self.hub.queue(queue)
        wanted = None if ids is None else set(ids)
        chosen = [d for d in q.dead if wanted is None or d.id in wanted]
        q.dead = [d for d in q.dead if d not in chosen]
        for letter in chosen:
            q.push(_Entry(letter.body, 0))
        return len(chosen)

    async def purge_dead(self, queue: str) -> int:
        q = self.hub.queue(queue)
        count = len(q.dead)
        q.dead.clear()
        return count

    async def store_result(self, task_id: str, body: bytes, ttl: float) -> None:
        results = self.hub.results
        now = time.time()
        for key in [k for k, (expiry, _) in results.items() if expiry <= now]:
            del results[key]  # expired entries go when the next one arrives
        results[task_id] = (now + ttl, body)

    async def fetch_result(self, task_id: str) -> bytes | None:
        found = self.hub.results.get(task_id)
        if found is None or found[0] <= time.time():
            return None
        return found[1]

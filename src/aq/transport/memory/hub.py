"""The state of one in-process broker: its queues, inboxes, control bus and store.

Every memory transport and memory store opened on the same URL (``memory://``
or ``memory://name``) shares one :class:`Hub` while at least one of them is
connected (:func:`attach`, :func:`detach`). Queues keep ready messages in a
priority heap and delayed ones in a heap by due time; a consumer waiting for
news waits on a future that a publish, a requeue or a due time wakes.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from dataclasses import dataclass, field

from aq.transport.admin import DeadLetter

__all__ = [
    "Entry",
    "EventBuffer",
    "Hub",
    "MemoryQueue",
    "attach",
    "detach",
    "hub_name",
    "next_sequence",
]

#: A number larger than every one before it: the order of arrival.
next_sequence = itertools.count().__next__


@dataclass(slots=True)
class Entry:
    body: bytes
    priority: int
    delivery_count: int = 0


@dataclass(slots=True)
class MemoryQueue:
    name: str
    #: The queue whose dead letters and stats this one's are (itself, or for an
    #: isolation queue the queue it isolates for).
    home: MemoryQueue | None = None
    ready: list[tuple[int, int, Entry]] = field(default_factory=list)
    delayed: list[tuple[float, int, Entry]] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)
    unacked: int = 0
    consumers: int = 0

    def push(self, entry: Entry) -> None:
        heapq.heappush(self.ready, (-entry.priority, next_sequence(), entry))
        self.wake()

    def push_front(self, entry: Entry) -> None:
        # Requeued messages go ahead of others of the same priority.
        heapq.heappush(self.ready, (-entry.priority, -next_sequence(), entry))
        self.wake()

    def push_delayed(self, entry: Entry, eta: float) -> None:
        heapq.heappush(self.delayed, (eta, next_sequence(), entry))
        self.wake()  # a waiting consumer re-arms its timer for the new due time

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


class EventBuffer:
    """The event batches one subscriber has not read yet; the oldest go first
    when it holds ``limit``."""

    def __init__(self, limit: int) -> None:
        self.batches: deque[bytes] = deque(maxlen=limit)
        self.arrived = asyncio.Event()

    def put(self, body: bytes) -> None:
        self.batches.append(body)
        self.arrived.set()

    async def get(self) -> bytes:
        while not self.batches:
            self.arrived.clear()
            await self.arrived.wait()
        return self.batches.popleft()


class Hub:
    """One in-process broker; see the module docstring."""

    def __init__(self) -> None:
        self.queues: dict[str, MemoryQueue] = {}
        self.isolation: dict[str, MemoryQueue] = {}
        self.inboxes: dict[str, asyncio.Queue[bytes]] = {}
        self.control: set[asyncio.Queue[bytes]] = set()
        #: Event subscribers: each a bounded buffer that drops its oldest batch.
        self.events: set[EventBuffer] = set()
        #: The store's values: key -> (expiry, value), and the expiries in a heap.
        self.values: dict[str, tuple[float, object]] = {}
        self.expiries: list[tuple[float, str]] = []
        self.users = 0

    def queue(self, name: str) -> MemoryQueue:
        q = self.queues.get(name)
        if q is None:
            q = self.queues[name] = MemoryQueue(name)
        return q

    def isolation_queue(self, name: str) -> MemoryQueue:
        q = self.isolation.get(name)
        if q is None:
            q = self.isolation[name] = MemoryQueue(name, home=self.queue(name))
        return q


_hubs: dict[str, Hub] = {}


def hub_name(url: str) -> str:
    """The hub a ``memory://name`` URL names."""
    return url.removeprefix("memory://").strip("/")


def attach(name: str) -> Hub:
    """The hub called ``name``, created if no one uses it; one more user."""
    hub = _hubs.get(name)
    if hub is None:
        hub = _hubs[name] = Hub()
    hub.users += 1
    return hub


def detach(name: str, hub: Hub) -> None:
    """One user fewer; the last one gone, the hub and everything in it go too."""
    hub.users -= 1
    if hub.users == 0 and _hubs.get(name) is hub:
        del _hubs[name]

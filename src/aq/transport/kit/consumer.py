"""Deliveries settled once, and a consumer that hands out what it has buffered.

Every backend's consumer keeps the deliveries its server sent ahead of the
worker (up to the prefetch) in a buffer, hands them out one at a time, and
tracks each one until it is settled: acked, requeued, dead-lettered, isolated,
returned on close, or abandoned. :class:`OnceDelivery` makes the first of
those win and the rest do nothing; :class:`BufferedConsumer` owns the buffer,
the set of unsettled deliveries and the waiting for the next one. A backend
supplies how a delivery is settled on its server, and may refuse a buffered
delivery when it is handed out (RabbitMQ drops those whose channel closed).
"""

from __future__ import annotations

import abc
import asyncio
from collections import deque
from typing import Any, Generic, Protocol, TypeVar

from aq.errors import BrokerError
from aq.transport.base import Consumer, Delivery

__all__ = ["BufferedConsumer", "Holder", "OnceDelivery", "connected", "wake"]

D = TypeVar("D", bound="OnceDelivery")
T = TypeVar("T")


class Holder(Protocol):
    """What tracks a delivery until it is settled (a :class:`BufferedConsumer`)."""

    def forget(self, delivery: Any) -> None: ...


class OnceDelivery(Delivery):
    """A delivery whose first settlement wins; later ones do nothing.

    A settlement checks :attr:`settled`, does its server-side step, and then
    calls :meth:`mark_settled`, which stops the consumer from tracking the
    delivery; a step that raises leaves it unsettled, to be tried again. (The
    Redis and RabbitMQ consumers do this in their ``settle``, in one coroutine:
    it is the hottest path a worker has.) A step that cannot fail or wait, as
    in memory, claims the settlement first with :meth:`_claim`.
    """

    __slots__ = ("_holder", "_settled")

    def __init__(self, holder: Holder, body: bytes, queue: str, delivery_count: int) -> None:
        super().__init__(body, queue, delivery_count)
        self._holder = holder
        self._settled = False

    @property
    def settled(self) -> bool:
        """Whether a settlement has completed (or one that cannot fail is under way)."""
        return self._settled

    def _claim(self) -> bool:
        """Settle it now, if no settlement has; whether this call did (and so does
        the step, which must not fail)."""
        if self._settled:
            return False
        self.mark_settled()
        return True

    def mark_settled(self) -> None:
        """Count this delivery settled and let its consumer forget it (its step is done,
        or none is needed)."""
        self._settled = True
        self._holder.forget(self)

    def abandon(self) -> None:
        """Stop tracking it unsettled; the server delivers it again (see Delivery)."""
        self.mark_settled()


class BufferedConsumer(Consumer, Generic[D]):
    """Buffers deliveries, hands them out in arrival order, tracks them until settled."""

    def __init__(self, prefetch: int) -> None:
        self.prefetch = prefetch
        self._ready: deque[D] = deque()
        self._unsettled: set[D] = set()
        self._arrived: asyncio.Future[None] | None = None
        self._closed = False

    @property
    def holding(self) -> int:
        """Deliveries received and not yet settled (buffered or being worked on)."""
        return len(self._unsettled)

    def hand_out(self, delivery: D) -> None:
        """Buffer ``delivery`` for :meth:`get` and track it until it is settled."""
        self._unsettled.add(delivery)
        self._ready.append(delivery)
        arrived = self._arrived
        if arrived is not None and not arrived.done():  # wake(), inline: once per message
            arrived.set_result(None)

    def forget(self, delivery: D) -> None:
        """Stop tracking ``delivery`` (it was settled or abandoned); frees its slot."""
        self._unsettled.discard(delivery)
        self._forgotten(delivery)

    def _forgotten(self, delivery: D) -> None:
        """Called after a delivery stopped being tracked (room for another)."""

    def _accept(self, delivery: D) -> bool:
        """Whether a buffered delivery may still be handed out (backends override it;
        the override forgets one it refuses)."""
        return True

    async def get(self) -> D:
        while True:
            if self._closed:
                raise BrokerError("consumer is closed")
            if self._ready:
                delivery = self._ready.popleft()
                if self._accept(delivery):
                    return delivery
                continue
            if not self._fill():
                await self._wait_for_arrival()

    def _fill(self) -> bool:
        """Buffer what can be had at once, without waiting; whether anything was
        (a backend that fetches on demand, as memory does, overrides it)."""
        return False

    async def _wait_for_arrival(self) -> None:
        """Wait until :meth:`hand_out` buffers something (or the consumer closes)."""
        self._arrived = asyncio.get_running_loop().create_future()
        await self._arrived

    def _stop_handing_out(self) -> bool:
        """Mark the consumer closed and wake a waiting :meth:`get`; False if it was already."""
        if self._closed:
            return False
        self._closed = True
        wake(self._arrived)
        return True

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop consuming; deliveries not yet settled are returned to their queues."""


def wake(future: asyncio.Future[None] | None) -> None:
    """Resolve ``future`` if it is still pending (a waiter's wake-up call)."""
    if future is not None and not future.done():
        future.set_result(None)


def connected(value: T | None, what: str) -> T:
    """``value`` (a client, a connection), which exists only while ``what`` is connected.

    Raises:
        aq.BrokerError: it is not connected.
    """
    if value is None:
        raise BrokerError(f"the {what} is not connected; call connect() first")
    return value

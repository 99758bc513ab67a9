"""The ``Transport``: the narrow interface between aq's runtime and a message broker.

A transport moves opaque bytes: it publishes to named queues (with priority and
an optional due time), hands out :class:`Delivery` objects that must be acked,
requeued, dead-lettered or isolated, carries replies to a producer's
:class:`Inbox`, broadcasts control messages to every worker, and carries
monitoring events to whoever watches (best effort, bounded). It knows
nothing of tasks, and no exception of its underlying client library may escape
it: they are translated into :class:`aq.BrokerError` subclasses at the boundary.

Two neighbours share its connection: its :class:`~aq.transport.admin.Admin`
(queue administration) and, when its server can keep state by key, a
:class:`~aq.transport.store.Store`; a server that can elect a leader by
itself also offers an :class:`~aq.transport.election.Election`.
docs/transports.md says how to write one, and :mod:`aq.testing.contract`
checks it.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

from aq.errors import BrokerError
from aq.transport.admin import Admin
from aq.transport.connection import Connection
from aq.transport.election import Election
from aq.transport.store import Store

__all__ = ["EVENT_BACKLOG", "EVENT_BACKLOG_BYTES", "Consumer", "Delivery", "Inbox", "Transport"]

#: The most event batches the broker keeps for a subscriber that reads slowly
#: (a batch holds up to 200 events; older ones are dropped first), and the
#: most bytes where the broker can count them (RabbitMQ).
EVENT_BACKLOG = 1000
EVENT_BACKLOG_BYTES = 64 * 1024 * 1024


class Delivery(abc.ABC):
    """One message handed to a consumer; settle it exactly once."""

    __slots__ = ("body", "delivery_count", "queue")

    def __init__(self, body: bytes, queue: str, delivery_count: int) -> None:
        self.body = body
        self.queue = queue
        #: 1 on first delivery; one more for each earlier delivery that was not
        #: settled (its worker died, its connection dropped) or was requeued after
        #: an internal error. Returning a message on a graceful shutdown does not
        #: count, and a message moved to the isolation queue starts again at 1.
        self.delivery_count = delivery_count

    @abc.abstractmethod
    async def ack(self) -> None:
        """The outcome is handed off: forget the message."""

    @abc.abstractmethod
    async def requeue(self) -> None:
        """Return the message to its queue for another consumer (e.g. on shutdown)."""

    @abc.abstractmethod
    async def dead_letter(self, reason: str) -> None:
        """Move the message to its queue's dead-letter store with ``reason``."""

    @abc.abstractmethod
    async def isolate(self) -> None:
        """Move the message to its queue's isolation queue, as a new message (its
        delivery count starts again), in one step: its workers died while it ran,
        so it runs next alone, where a crash can be blamed on it. Consume isolation
        queues with ``consume(..., isolated=True)``."""

    def abandon(self) -> None:  # noqa: B027 - optional hook
        """Stop tracking this delivery without settling it: the broker could not be
        reached to settle it, and will deliver the message again (once its
        connection has closed, or its claim has expired)."""

    async def keep_alive(self) -> None:  # noqa: B027 - optional hook
        """Refresh this delivery's claim; transports with visibility timeouts override it."""


class Consumer(abc.ABC):
    """A subscription to one or more queues, yielding deliveries one at a time."""

    @abc.abstractmethod
    async def get(self) -> Delivery:
        """Wait for the next delivery."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop consuming; deliveries not yet settled are returned to their queues."""


class Inbox(abc.ABC):
    """A stream of bytes addressed to this process: replies or control messages."""

    address: str

    @abc.abstractmethod
    async def get(self) -> bytes:
        """Wait for the next message."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop receiving and release the address."""


class Transport(Connection):
    """A connection to one broker. Use as an async context manager or call connect/close."""

    #: Whether producers and workers must share one process (the memory broker).
    in_process: bool = False
    #: Seconds between ``Delivery.keep_alive`` calls for running tasks, for
    #: transports whose unacked messages are redelivered after a visibility
    #: timeout; ``None`` when claims never expire.
    heartbeat_interval: float | None = None
    #: How many times a message may crash the workers that run it before it is
    #: dead-lettered (the worker's crash policy reads it; at least 2).
    max_deliveries: int = 10
    #: Seconds a delivery may stay unsettled before the broker takes it back
    #: and redelivers it (RabbitMQ's ``consumer_timeout``); ``None`` when there
    #: is no such limit. A worker refuses tasks whose timeout is longer.
    max_hold: float | None = None

    def __init__(self, url: str) -> None:
        self.url = url

    @property
    @abc.abstractmethod
    def admin(self) -> Admin:
        """Queue administration over this transport's connection."""

    def store(self) -> Store | None:
        """The :class:`Store` on this transport's own server, sharing its connection,
        or ``None`` if the broker keeps no state by key (RabbitMQ): then a feature
        that needs one is given a store with ``aq.Broker(store=...)``."""
        return None

    def election(self, name: str) -> Election | None:
        """A leader election under ``name`` run by the broker itself (RabbitMQ's
        single-active-consumer queues), or ``None``: then leaders are elected by
        a lease in the store."""
        return None

    @abc.abstractmethod
    async def publish(
        self, queue: str, body: bytes, *, priority: int = 0, eta: float | None = None
    ) -> None:
        """Store ``body`` in ``queue``; return once the broker has it.

        Args:
            queue: the queue name.
            body: the encoded message.
            priority: 0 (default) to 9; higher is delivered first.
            eta: a UNIX time before which the message must not be delivered.
        """

    async def consume(
        self, queues: Sequence[str], prefetch: int, *, isolated: bool = False
    ) -> Consumer:
        """Start consuming ``queues``, holding at most ``prefetch`` unsettled deliveries.

        With ``isolated``, consume their isolation queues instead (see
        :meth:`Delivery.isolate`); those deliveries dead-letter into, and count
        in the stats of, the queue they came from.

        Raises:
            aq.BrokerError: no queue was named.
        """
        if not queues:
            raise BrokerError("consume() needs at least one queue")
        return await self.open_consumer(list(queues), max(1, prefetch), isolated)

    @abc.abstractmethod
    async def open_consumer(self, queues: list[str], prefetch: int, isolated: bool) -> Consumer:
        """:meth:`consume`, its arguments checked: at least one queue, a prefetch of
        at least 1."""

    @abc.abstractmethod
    async def open_inbox(self) -> Inbox:
        """Create this process's reply address."""

    @abc.abstractmethod
    async def send_reply(self, address: str, body: bytes) -> None:
        """Send ``body`` to the inbox at ``address``; dropped if nobody listens there."""

    async def reply_and_ack(self, delivery: Delivery, address: str, body: bytes) -> None:
        """Send the final reply for ``delivery``, then acknowledge it.

        Transports that can do both in one step (and batch it) override this;
        either way the ack never comes before the reply is handed off.
        """
        await self.send_reply(address, body)
        await delivery.ack()

    @abc.abstractmethod
    async def broadcast(self, body: bytes) -> None:
        """Send a control message to every subscribed worker."""

    @abc.abstractmethod
    async def subscribe_control(self) -> Inbox:
        """Receive control messages sent with :meth:`broadcast`."""

    async def ping(self) -> None:
        """Return once the broker has answered; raise :class:`aq.BrokerError` if
        it cannot be reached. For health checks (``/healthz``); by default a
        transport is taken to be connected."""

    @abc.abstractmethod
    async def publish_events(self, body: bytes) -> None:
        """Send one batch of monitoring events to every current subscriber.

        Best effort and bounded: the broker keeps only the newest batches for a
        subscriber that reads slowly (a capped stream, a length-limited queue),
        and nothing for nobody. Raises :class:`aq.BrokerError` if the broker
        cannot be reached."""

    @abc.abstractmethod
    async def subscribe_events(self) -> Inbox:
        """Receive the event batches published from now on."""

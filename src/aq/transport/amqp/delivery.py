"""A RabbitMQ delivery: one message this process holds, and the ways to settle it.

:class:`AmqpDelivery` settles by ``basic.ack`` (through its consumer's
:class:`~aq.transport.amqp.batch.AckWindow`), or by publishing a copy first
(:func:`republish`: dead letter, isolation, requeue, return) and then acking.
Its consumer (:class:`Settler`, the
:class:`~aq.transport.amqp.consumer.AmqpConsumer`) runs each settlement once.
A message's ``x-aq-requeues`` header counts its earlier deliveries that were
not settled; see the consumer's module docstring for how counts are kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import aiormq.abc
from aiormq.abc import DeliveredMessage

from aq.transport.amqp.batch import AckWindow
from aq.transport.amqp.context import AmqpContext
from aq.transport.amqp.topology import QueueNames
from aq.transport.kit import OnceDelivery

__all__ = ["REQUEUES", "AmqpDelivery", "Settler", "republish"]

#: Header counting a message's earlier deliveries that were not settled.
REQUEUES = "x-aq-requeues"
#: Headers a copy of a message must not carry: RabbitMQ's own delivery count.
_SERVER_COUNTS = frozenset(("x-delivery-count",))


class Settler(Protocol):
    """The consumer a delivery belongs to, as the delivery uses it."""

    context: AmqpContext
    acks: AckWindow

    def forget(self, delivery: Any) -> None: ...

    def source(self, names: QueueNames) -> str: ...

    def nack_later(self, channel: aiormq.abc.AbstractChannel, tag: int) -> None: ...

    def settle(
        self, delivery: AmqpDelivery, how: Callable[[], Awaitable[None]]
    ) -> Awaitable[None]: ...


class AmqpDelivery(OnceDelivery):
    """A message delivered to this consumer and not yet settled."""

    __slots__ = (
        "_consumer",
        "acking",
        "channel",
        "copied",
        "headers",
        "names",
        "priority",
        "source",
        "tag",
    )

    def __init__(
        self,
        consumer: Settler,
        names: QueueNames,
        message: DeliveredMessage,
        headers: dict[str, Any],
        delivery_count: int,
    ) -> None:
        super().__init__(consumer, message.body, names.name, delivery_count)
        self._consumer = consumer
        self.names = names
        #: The RabbitMQ queue it came from: the work queue or the isolation queue.
        self.source = consumer.source(names)
        self.channel: aiormq.abc.AbstractChannel = message.channel
        self.tag: int = message.delivery_tag or 0
        self.headers = headers
        self.priority: int = message.header.properties.priority or 0
        #: Its ack has been asked for: it is settled, whatever its caller sees.
        self.acking = False
        #: A copy of it has been confirmed (isolated, returned or requeued).
        self.copied = False

    @property
    def stale(self) -> bool:
        """The channel it came on has closed, so RabbitMQ has requeued it already."""
        return bool(self.channel.is_closed)

    @property
    def settled(self) -> bool:
        # Its ack asked for, it is settled, whatever its caller sees.
        return self._settled or self.acking

    def _run(self, how: Callable[[], Awaitable[None]]) -> Awaitable[None]:
        # The consumer settles it once, in one coroutine: the hot path.
        return self._consumer.settle(self, how)

    async def ack(self) -> None:
        await self._run(self._ack)

    async def requeue(self) -> None:
        await self._run(self._requeue)

    async def dead_letter(self, reason: str) -> None:
        async def move() -> None:
            await self._consumer.context.publish_dead(
                self.names, self.body, self.headers, self.priority, reason
            )
            await self._ack()

        await self._run(move)

    async def _ack(self) -> None:
        self.acking = True
        # Shielded: the window's future is shared by the turn's acks, and one
        # caller's cancellation must not cancel it for the others.
        await asyncio.shield(self._consumer.acks.ack(self.channel, self.tag))

    def abandon(self) -> None:
        self.mark_settled()
        if not self.stale:  # the outage was elsewhere: hand the message back now
            self._consumer.nack_later(self.channel, self.tag)

    async def isolate(self) -> None:
        async def move() -> None:
            await self._republish(self.names.isolated, 0, "isolate")
            await self._ack()

        await self._run(move)

    async def release(self) -> None:
        """Return the message on shutdown; this delivery does not count."""

        async def back() -> None:
            await self._republish(self.source, self.delivery_count - 1, "return")
            await self._ack()

        await self._run(back)

    async def _requeue(self) -> None:
        await self._republish(self.source, self.delivery_count, "requeue")
        await self._ack()

    async def _republish(self, queue: str, earlier: int, what: str) -> None:
        """Publish a copy to ``queue`` that counts ``earlier`` unsettled deliveries."""
        await republish(
            self._consumer.context, queue, self.body, self.headers, self.priority, earlier, what
        )
        self.copied = True


async def republish(
    context: AmqpContext,
    queue: str,
    body: bytes,
    headers: dict[str, Any],
    priority: int,
    earlier: int,
    what: str,
) -> None:
    """Publish a copy of a message to ``queue`` (confirmed) whose ``x-aq-requeues``
    says it had ``earlier`` deliveries that were not settled."""
    copy = {k: v for k, v in headers.items() if k not in _SERVER_COUNTS}
    if earlier:
        copy[REQUEUES] = earlier
    else:
        copy.pop(REQUEUES, None)
    await context.publish_raw(
        "", queue, body, headers=copy or None, priority=priority, what=f"{what} to {queue}"
    )

"""Consuming RabbitMQ queues: prefetch, hand out, settle, requeue on close.

One :class:`AmqpConsumer` serves a worker: one robust channel whose prefetch
(``basic.qos``) is the worker's concurrency, and one consumer on it per queue.
Deliveries wait in a local buffer until the worker takes them. Settling:

* **ack** is ``basic.ack``, sent only after the outcome was handed off, and
  batched per loop turn (:class:`aq.transport.amqp.batch.AckWindow`);
* **dead-letter** publishes the message, with the reason in its headers, to
  the queue's dead-letter queue (confirmed), then acks it;
* **requeue** (after an internal error) republishes the message with its
  requeue count raised (confirmed), then acks it, so the count survives on
  classic queues, which only flag a redelivery; quorum queues count deliveries
  themselves, so there it is a ``basic.nack`` with requeue.

When the connection drops, RabbitMQ requeues everything the channel held. A
delivery from a channel that has since closed can no longer be settled; it is
not lost, since the server already gave it back: settling it is a no-op and
buffered ones are dropped instead of being run a second time here. Closing the
consumer cancels it and nacks, with requeue, whatever it still holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import aiormq.abc
from aio_pika.abc import AbstractRobustChannel
from aiormq.abc import DeliveredMessage

from aq import background
from aq.errors import BrokerError, ConnectionLost
from aq.logs import event
from aq.transport.amqp import inspection
from aq.transport.amqp.batch import AckWindow
from aq.transport.amqp.direct import DirectConsumers, OnMessage
from aq.transport.amqp.errors import translated
from aq.transport.amqp.inbox import CLOSE_TIMEOUT
from aq.transport.amqp.topology import QueueNames, work_arguments
from aq.transport.base import Consumer, Delivery

if TYPE_CHECKING:
    from aq.transport.amqp.transport import AmqpTransport

__all__ = ["AmqpConsumer", "AmqpDelivery"]

log = logging.getLogger("aq.amqp")

#: Header counting explicit requeues of a message (classic queues).
REQUEUES = "x-aq-requeues"
#: Header with a delayed message's due time, in UNIX milliseconds.
ETA = "x-aq-eta"
#: Seconds between the watchdog's looks at queues that delivered nothing.
WATCH_INTERVAL = 5.0


class AmqpDelivery(Delivery):
    """A message delivered to this consumer and not yet settled."""

    __slots__ = ("_consumer", "_settled", "channel", "headers", "names", "priority", "tag")

    def __init__(
        self,
        consumer: AmqpConsumer,
        names: QueueNames,
        message: DeliveredMessage,
        headers: dict[str, Any],
        delivery_count: int,
    ) -> None:
        super().__init__(message.body, names.name, delivery_count)
        self._consumer = consumer
        self.names = names
        self.channel: aiormq.abc.AbstractChannel = message.channel
        self.tag: int = message.delivery_tag or 0
        self.headers = headers
        self.priority: int = message.header.properties.priority or 0
        self._settled = False

    @property
    def stale(self) -> bool:
        """The channel it came on has closed, so RabbitMQ has requeued it already."""
        return bool(self.channel.is_closed)

    async def ack(self) -> None:
        await self._consumer.settle(self, self._ack)

    async def requeue(self) -> None:
        await self._consumer.settle(self, self._requeue)

    async def dead_letter(self, reason: str) -> None:
        async def move() -> None:
            await self._consumer.transport.publish_dead(
                self.names, self.body, self.headers, self.priority, reason
            )
            await self._ack()

        await self._consumer.settle(self, move)

    async def _ack(self) -> None:
        await self._consumer.acks.ack(self.channel, self.tag)

    async def nack(self) -> None:
        """``basic.nack`` with requeue."""
        await self._consumer.acks.nack(self.channel, self.tag)

    async def _requeue(self) -> None:
        if self._consumer.transport.settings.queue_type == "quorum":
            await self.nack()
            return
        headers = dict(self.headers)
        headers[REQUEUES] = _int(headers.get(REQUEUES)) + 1
        await self._consumer.transport.publish_raw(
            "",
            self.names.work,
            self.body,
            headers=headers,
            priority=self.priority,
            what=f"requeue to {self.queue}",
        )
        await self._ack()


class AmqpConsumer(Consumer):
    """See the module docstring."""

    def __init__(self, transport: AmqpTransport, queues: list[QueueNames], prefetch: int) -> None:
        self.transport = transport
        self.queues = queues
        self.prefetch = prefetch
        self._channel: AbstractRobustChannel | None = None
        self._consumers: DirectConsumers | None = None
        self._ready: deque[AmqpDelivery] = deque()
        self._unsettled: set[AmqpDelivery] = set()
        self._arrived: asyncio.Future[None] | None = None
        self._chores: set[asyncio.Task[None]] = set()
        self._arrivals = dict.fromkeys((names.name for names in queues), 0)
        self._watchdog: asyncio.Task[None] | None = None
        self.acks = AckWindow()
        self._closed = False

    def held(self, name: str) -> int:
        """Deliveries of queue ``name`` this consumer holds unsettled."""
        return sum(1 for d in self._unsettled if d.queue == name and not d.stale)

    async def start(self) -> None:
        transport = self.transport
        settings = transport.settings
        with translated("start consuming"):
            channel = await transport.connection.channel(publisher_confirms=False)
            self._channel = channel
            await channel.set_qos(prefetch_count=self.prefetch)
            for names in self.queues:
                await transport.declarer.delays(names.name)
                await channel.declare_queue(
                    names.work,
                    durable=True,
                    arguments=work_arguments(
                        transport.names, names, settings.queue_type, settings.max_deliveries
                    ),
                )
            consumers = DirectConsumers(
                channel,
                [(names.work, self._callback(names)) for names in self.queues],
                restore=self._declare_again,
            )
            await consumers.start()
            self._consumers = consumers
        self._watchdog = background.start("aq-amqp-watchdog", self._watch)

    async def _declare_again(self, work: str) -> None:
        """Declare a work queue (and its dead-letter and delay queues) that RabbitMQ
        cancelled our consumer of, as it does when someone deletes the queue."""
        declarer = self.transport.declarer
        declarer.forget()
        for names in self.queues:
            if names.work == work:
                await declarer.delays(names.name)

    def _callback(self, names: QueueNames) -> OnMessage:
        async def on_message(message: DeliveredMessage) -> None:
            self._received(names, message)

        return on_message

    def _received(self, names: QueueNames, message: DeliveredMessage) -> None:
        if self._closed:
            return  # not acked: the channel's close returns it to the queue
        self._arrivals[names.name] += 1
        tag = message.delivery_tag or 0
        self.acks.track(message.channel, tag)
        headers: dict[str, Any] = message.header.properties.headers or {}
        eta = headers.get(ETA)
        if isinstance(eta, int) and eta > time.time() * 1000 + 1:
            self._spawn(self._delay_again(names, message, headers, eta))
            return
        if self.transport.settings.queue_type == "quorum":
            count = 1 + _int(headers.get("x-delivery-count"))
        else:
            count = 1 + _int(headers.get(REQUEUES)) + (1 if message.redelivered else 0)
        delivery = AmqpDelivery(self, names, message, headers, count)
        self._unsettled.add(delivery)
        self._ready.append(delivery)
        _wake(self._arrived)

    async def _watch(self) -> None:
        """Notice a consumer that RabbitMQ stopped feeding without a word; consume again.

        RabbitMQ 3.10 neither cancels nor moves a consumer of a quorum queue that
        is deleted and at once declared again (by a producer, say): the consumer
        stays registered on this side, and nothing arrives. So every
        ``WATCH_INTERVAL`` seconds, each queue that delivered nothing since the
        last look while this consumer had room is asked how many messages it
        holds ready and how many consumers it has; ready messages at two looks
        running mean this consumer is not
        being fed, and so does a queue that counts no consumer at all while this
        one believes it consumes it; either way it is cancelled and started again.
        """
        seen = dict(self._arrivals)
        strikes = dict.fromkeys(seen, 0)
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            for names in self.queues:
                name = names.name
                idle = self._arrivals[name] == seen[name] and len(self._unsettled) < self.prefetch
                seen[name] = self._arrivals[name]
                if not idle:
                    strikes[name] = 0
                    continue
                try:
                    found = await inspection.ready(self.transport, names.work)
                except ConnectionLost:
                    continue  # the reconnection brings the consumers back
                # Missing, messages waiting for a consumer with room, or no consumer
                # at all while this one believes it consumes: not being fed.
                stalled = found is None or found[0] > 0 or found[1] == 0
                strikes[name] = strikes[name] + 1 if stalled else 0
                if strikes[name] >= 2 and self._consumers is not None:
                    event(
                        log,
                        logging.WARNING,
                        "amqp.consumer_stalled",
                        queue=name,
                        ready=found[0] if found is not None else "missing",
                        consumers=found[1] if found is not None else 0,
                        note="RabbitMQ is not feeding this consumer; consuming again",
                    )
                    strikes[name] = 0
                    self._consumers.restart(names.work)

    async def _delay_again(
        self, names: QueueNames, message: DeliveredMessage, headers: dict[str, Any], eta: int
    ) -> None:
        """A delayed message arrived early (delays longer than the ladder): send it round."""
        try:
            await self.transport.publish_raw(
                *self.transport.delay_route(names.work, eta),
                message.body,
                headers=dict(headers),
                priority=message.header.properties.priority or 0,
                what=f"re-delay a message of {names.name}",
            )
            await self.acks.ack(message.channel, message.delivery_tag or 0)
        except Exception as exc:
            # Still unacked, so RabbitMQ delivers it again later.
            event(log, logging.WARNING, "amqp.redelay_failed", queue=names.name, error=exc)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)

    async def get(self) -> Delivery:
        while True:
            if self._closed:
                raise BrokerError("consumer is closed")
            while self._ready:
                delivery = self._ready.popleft()
                if delivery.stale:  # RabbitMQ requeued it when its channel closed
                    self._unsettled.discard(delivery)
                    continue
                return delivery
            self._arrived = asyncio.get_running_loop().create_future()
            await self._arrived

    async def settle(self, delivery: AmqpDelivery, how: Any) -> None:
        """Settle ``delivery`` once; a delivery whose channel closed needs nothing."""
        if delivery._settled:
            return
        try:
            if not delivery.stale:
                with translated(f"settle a message of {delivery.queue}"):
                    await how()
            else:
                event(log, logging.WARNING, "amqp.settle_skipped", queue=delivery.queue)
        except BrokerError:
            if not delivery.stale:
                raise
            # The connection dropped mid-way: RabbitMQ gives the message back.
            event(log, logging.WARNING, "amqp.settle_skipped", queue=delivery.queue)
        delivery._settled = True
        self._unsettled.discard(delivery)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Bounded: with the broker down a robust channel waits for it forever, and
        # the server requeues whatever a dead channel held anyway.
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                if self._consumers is not None:
                    await self._consumers.cancel()
                await self.acks.close()
                for delivery in list(self._unsettled):
                    if not delivery.stale:
                        await delivery.nack()
                    delivery._settled = True
        self._unsettled.clear()
        self._ready.clear()
        if self._chores:
            await asyncio.gather(*self._chores, return_exceptions=True)
        if self._channel is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await self._channel.close()
        self.transport.consumers.discard(self)
        _wake(self._arrived)


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _wake(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)

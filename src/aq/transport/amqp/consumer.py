"""Consuming RabbitMQ queues: prefetch, hand out, count, settle, return on close.

One :class:`AmqpConsumer` serves a worker: one robust channel whose prefetch
(``basic.qos``) is the worker's concurrency, and one consumer on it per queue
(the work queues, or with ``isolated`` their isolation queues). Deliveries
wait in a local buffer until the worker takes them. Settling:

* **ack** is ``basic.ack``, sent only after the outcome was handed off, and
  batched per loop turn (:class:`aq.transport.amqp.batch.AckWindow`);
* **dead-letter** publishes the message, with the reason in its headers, to
  the queue's dead-letter queue (confirmed), then acks it;
* **isolate** publishes it to the queue's isolation queue as a new message
  (confirmed), then acks it;
* **requeue** (after an internal error) republishes it with its count raised
  (confirmed), then acks it.

**Counting deliveries.** A message's ``x-aq-requeues`` header counts its
earlier deliveries that were not settled, and a quorum queue adds its own
``x-delivery-count``. A classic queue only flags a redelivery, so a message
that arrives flagged is not handed out: it is republished with its count
raised (confirmed) and acked, and its copy is delivered with the exact count.
Returning a message on shutdown republishes it with its count unchanged, so a
graceful restart counts as no delivery.

When the connection drops, RabbitMQ requeues everything the channel held. A
delivery from a channel that has since closed can no longer be settled; it is
not lost, since the server already gave it back: settling it is a no-op and
buffered ones are dropped instead of being run a second time here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiormq.abc
from aio_pika.abc import AbstractRobustChannel
from aiormq.abc import DeliveredMessage

from aq import background
from aq.errors import BrokerError, ConnectionLost
from aq.logs import event
from aq.transport.amqp import inspection
from aq.transport.amqp.batch import AckWindow
from aq.transport.amqp.context import CLOSE_TIMEOUT, AmqpContext
from aq.transport.amqp.delivery import REQUEUES, AmqpDelivery, republish
from aq.transport.amqp.direct import DirectConsumers, OnMessage
from aq.transport.amqp.errors import translated
from aq.transport.amqp.topology import QueueNames, work_arguments
from aq.transport.kit import BufferedConsumer

__all__ = ["ETA", "AmqpConsumer"]

log = logging.getLogger("aq.amqp")

#: The headers of a message that has none (shared, never changed).
_NO_HEADERS: dict[str, Any] = {}
#: Header with a delayed message's due time, in UNIX milliseconds.
ETA = "x-aq-eta"
#: Seconds between the watchdog's looks at queues that delivered nothing.
WATCH_INTERVAL = 5.0


class AmqpConsumer(BufferedConsumer[AmqpDelivery]):
    """See the module docstring."""

    def __init__(
        self,
        context: AmqpContext,
        queues: list[QueueNames],
        prefetch: int,
        isolated: bool = False,
    ) -> None:
        super().__init__(prefetch)
        self.context = context
        self.settings = context.settings
        self.queues = queues
        #: Whether it consumes the isolation queues rather than the work queues.
        self.isolated = isolated
        self._channel: AbstractRobustChannel | None = None
        self._consumers: DirectConsumers | None = None
        self._chores: set[asyncio.Task[None]] = set()
        self._arrivals = dict.fromkeys((names.name for names in queues), 0)
        self._watchdog: asyncio.Task[None] | None = None
        self.acks = AckWindow()

    def _forgotten(self, delivery: AmqpDelivery) -> None:
        # An isolation consumer holding nothing consumes all its queues again.
        if self.isolated and not self._unsettled and self._consumers is not None:
            self._spawn(self._consumers.resume())

    def nack_later(self, channel: aiormq.abc.AbstractChannel, tag: int) -> None:
        """``basic.nack`` with requeue, without waiting: RabbitMQ delivers it again."""
        self._spawn(self.acks.nack(channel, tag))

    def source(self, names: QueueNames) -> str:
        """The RabbitMQ queue this consumer reads for aq queue ``names``."""
        return names.isolated if self.isolated else names.work

    def held(self, name: str) -> int:
        """Deliveries of queue ``name`` this consumer holds unsettled."""
        return sum(1 for d in self._unsettled if d.queue == name and not d.stale)

    async def start(self) -> None:
        context = self.context
        settings = context.settings
        with translated("start consuming"):
            channel = await context.connection.channel(publisher_confirms=False)
            self._channel = channel
            channel.close_callbacks.add(self._channel_closed)
            await channel.set_qos(prefetch_count=self.prefetch)
            for names in self.queues:
                await context.declarer.delays(names.name)
                await channel.declare_queue(  # on the robust channel: restored after reconnects
                    self.source(names),
                    durable=True,
                    arguments=work_arguments(
                        context.names, names, settings.queue_type, settings.max_deliveries
                    ),
                )
            consumers = DirectConsumers(
                channel,
                [(self.source(names), self._callback(names)) for names in self.queues],
                restore=self._declare_again,
            )
            await consumers.start()
            self._consumers = consumers
        self._watchdog = background.start("aq-amqp-watchdog", self._watch)

    async def _declare_again(self, source: str) -> None:
        """Declare a queue (and its dead-letter, isolation and delay queues) that
        RabbitMQ cancelled our consumer of, as it does when someone deletes it."""
        declarer = self.context.declarer
        declarer.forget()
        for names in self.queues:
            if self.source(names) == source:
                await declarer.delays(names.name)

    def _channel_closed(self, _: object, exc: BaseException | None) -> None:
        if exc is not None and "delivery acknowledgement" in str(exc):
            event(
                log,
                logging.WARNING,
                "amqp.consumer_timeout",
                held=len(self._unsettled),
                limit=self.settings.consumer_timeout,
                note="RabbitMQ closed the channel: a delivery stayed unacknowledged longer "
                "than its consumer_timeout; the tasks still running will run again (give "
                "them a timeout below consumer_timeout, declared in the broker URL)",
            )

    def _callback(self, names: QueueNames) -> OnMessage:
        async def on_message(message: DeliveredMessage) -> None:
            self._received(names, message)

        return on_message

    def _received(self, names: QueueNames, message: DeliveredMessage) -> None:
        tag = message.delivery_tag or 0
        self.acks.track(message.channel, tag)
        if self._closed:
            # Sent before RabbitMQ saw the cancel: returned uncounted, like the rest.
            self._spawn(self._release_late(names, message))
            return
        self._arrivals[names.name] += 1
        headers: dict[str, Any] = message.header.properties.headers or _NO_HEADERS
        earlier = 0
        if headers:  # a fresh message of aq's own carries none
            eta = headers.get(ETA)
            if isinstance(eta, int) and eta > time.time() * 1000 + 1 and not self.isolated:
                self._spawn(self._delay_again(names, message, headers, eta))
                return
            earlier = self._earlier(message, headers)
        elif message.redelivered:
            earlier = self._earlier(message, headers)
        if message.redelivered and self.settings.queue_type != "quorum":
            # A flag, not a count: count it in a copy first.
            self._spawn(self._count_redelivery(names, message, headers, earlier))
            return
        self.hand_out(AmqpDelivery(self, names, message, headers, 1 + earlier))

    def _earlier(self, message: DeliveredMessage, headers: dict[str, Any]) -> int:
        """How many earlier deliveries of ``message`` were not settled."""
        earlier = _int(headers.get(REQUEUES))
        if self.settings.queue_type == "quorum":
            return earlier + _int(headers.get("x-delivery-count"))
        return earlier + (1 if message.redelivered else 0)

    async def _release_late(self, names: QueueNames, message: DeliveredMessage) -> None:
        headers: dict[str, Any] = message.header.properties.headers or {}
        earlier = self._earlier(message, headers)
        with contextlib.suppress(Exception):  # else the channel's close returns it
            await AmqpDelivery(self, names, message, headers, 1 + earlier).release()

    async def _count_redelivery(
        self, names: QueueNames, message: DeliveredMessage, headers: dict[str, Any], earlier: int
    ) -> None:
        """Republish a redelivered message of a classic queue counting the delivery
        that was not settled, then ack it: its copy arrives with the exact count."""
        try:
            await republish(
                self.context,
                self.source(names),
                message.body,
                headers,
                message.header.properties.priority or 0,
                earlier,
                "count a redelivery",
            )
            await self.acks.ack(message.channel, message.delivery_tag or 0)
        except Exception as exc:
            event(log, logging.WARNING, "amqp.recount_failed", queue=names.name, error=exc)
            self._hand_back(message)

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
                    found = await inspection.ready(self.context, self.source(names))
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
                    self._consumers.restart(self.source(names))

    async def _delay_again(
        self, names: QueueNames, message: DeliveredMessage, headers: dict[str, Any], eta: int
    ) -> None:
        """A delayed message arrived early (delays longer than the ladder): send it round."""
        try:
            await self.context.publish_raw(
                *self.context.delay_route(names.work, eta),
                message.body,
                headers=dict(headers),
                priority=message.header.properties.priority or 0,
                what=f"re-delay a message of {names.name}",
            )
            await self.acks.ack(message.channel, message.delivery_tag or 0)
        except Exception as exc:
            event(log, logging.WARNING, "amqp.redelay_failed", queue=names.name, error=exc)
            self._hand_back(message)

    def _hand_back(self, message: DeliveredMessage) -> None:
        """Return an unsettled message to RabbitMQ, which delivers it again (a closed
        channel has returned it already)."""
        if not message.channel.is_closed:
            self.nack_later(message.channel, message.delivery_tag or 0)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)

    def _accept(self, delivery: AmqpDelivery) -> bool:
        if delivery.stale:  # RabbitMQ requeued it when its channel closed
            self._unsettled.discard(delivery)
            return False
        return True

    async def get(self) -> AmqpDelivery:
        delivery = await super().get()
        if self.isolated:
            await self._hold_only(delivery)
        return delivery

    async def _hold_only(self, delivery: AmqpDelivery) -> None:
        """Make ``delivery`` the one message this isolation consumer holds while it runs.

        Prefetch is per consumer in RabbitMQ, so consuming several isolation queues
        could hold one message of each, and a crash would count against all of them.
        The other queues' consumers are cancelled until it is settled, and what they
        delivered meanwhile is returned uncounted.
        """
        if self._consumers is None or len(self.queues) == 1:
            return
        with contextlib.suppress(Exception):
            await self._consumers.pause(keep=delivery.source)
        others = [d for d in self._unsettled if d is not delivery and not d.stale]
        self._ready.clear()
        await asyncio.gather(*(d.release() for d in others), return_exceptions=True)

    async def settle(self, delivery: AmqpDelivery, how: Callable[[], Awaitable[None]]) -> None:
        """Settle ``delivery`` once, ``how``; a delivery whose channel closed needs
        nothing, since RabbitMQ has given the message back already."""
        if delivery.settled:
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
        delivery.mark_settled()

    async def close(self) -> None:
        if not self._stop_handing_out():
            return
        # Bounded: with the broker down a robust channel waits for it forever, and
        # the server requeues whatever a dead channel held anyway.
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                if self._consumers is not None:
                    await self._consumers.cancel()
        # Returned as copies that count nothing for this delivery; all at once, so a
        # thousand confirms take one round trip. What is not copied in time is left
        # to the channel's close, which returns it counted.
        returning = [d for d in self._unsettled if not d.stale and not d.acking]
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.settings.publish_timeout):
                await asyncio.gather(*(d.release() for d in returning))
        for delivery in returning:
            if delivery.copied and not delivery.acking and not delivery.stale:
                # Its copy is in the queue: ack the original, or it would run twice.
                delivery.acking = True
                self.acks.ack(delivery.channel, delivery.tag)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.acks.close()
        self._unsettled.clear()
        self._ready.clear()
        if self._chores:
            await asyncio.gather(*self._chores, return_exceptions=True)
        if self._channel is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await self._channel.close()
        self.context.consumers.discard(self)


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0

"""The queues a process reads for itself: its reply queue and its control queue.

A producer's replies come to ``P.reply.<id>`` (several to a message when a
worker batches them: :mod:`aq.transport.amqp.batch`): a durable queue with
``x-expires``, so it outlives a dropped connection or a broker restart
(replies sent meanwhile wait in it, persistent) and is deleted by RabbitMQ
once nobody has used it for ``reply_ttl``. A worker's control queue
``P.control.<id>`` is exclusive and bound to the fanout exchange
``P.control``: every worker gets every control message sent while it is
connected. A watcher's event queue ``P.events.<id>`` is exclusive too, bound
to the topic exchange ``P.events`` for every routing key, and holds at most
``EVENT_BACKLOG`` batches (the oldest dropped first) and expires once unused.
All are consumed on a robust channel, so aio-pika declares and
binds them again after a reconnect, and :mod:`aq.transport.amqp.direct`
consumes them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aio_pika.abc import (
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from aiormq.abc import DeliveredMessage

from aq.logs import event
from aq.transport.amqp.batch import AckWindow, split_batch
from aq.transport.amqp.context import CLOSE_TIMEOUT
from aq.transport.amqp.direct import DirectConsumers
from aq.transport.amqp.errors import translated
from aq.transport.base import EVENT_BACKLOG, EVENT_BACKLOG_BYTES, Inbox

__all__ = ["AmqpInbox", "open_control_inbox", "open_event_inbox", "open_reply_inbox"]

log = logging.getLogger("aq.amqp")

#: Seconds closing a queue or channel may take before it is abandoned.


class AmqpInbox(Inbox):
    """Bodies of the messages arriving on one queue, in order."""

    def __init__(
        self,
        address: str,
        channel: AbstractRobustChannel,
        queue: AbstractQueue,
        delete_on_close: bool,
        declare: Callable[[], Awaitable[object]],
        backlog: int | None = None,
    ) -> None:
        self.address = address
        #: The most bodies kept for a reader that is slow (the oldest go first);
        #: ``None``: all (replies and control messages are never dropped).
        self._backlog = backlog
        self._channel = channel
        self._queue = queue
        self._delete = delete_on_close
        self._bodies: asyncio.Queue[bytes] = asyncio.Queue()
        self._consumers = DirectConsumers(
            channel, [(queue.name, self._on_message)], restore=lambda _: declare()
        )
        self._acks = AckWindow()

    async def start(self) -> None:
        with translated(f"consume {self._queue.name}"):
            await self._consumers.start()

    async def _on_message(self, message: DeliveredMessage) -> None:
        bodies = split_batch(message.body, message.header.properties.headers)
        if bodies is None:
            event(log, logging.WARNING, "amqp.bad_batch", queue=self._queue.name)
            bodies = []
        for body in bodies:
            if self._backlog is not None and self._bodies.qsize() >= self._backlog:
                self._bodies.get_nowait()  # a slow watcher loses the oldest events
            self._bodies.put_nowait(body)
        # It is ours now (only this process reads this queue); acked in this
        # turn's frames, not awaited.
        channel, tag = message.channel, message.delivery_tag or 0
        self._acks.track(channel, tag)
        self._acks.ack(channel, tag)

    async def get(self) -> bytes:
        return await self._bodies.get()

    async def close(self) -> None:
        # Bounded: with the broker down, a robust channel would wait for it forever.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._consumers.cancel()  # nothing to cancel if it never started
                await self._acks.close()
                if self._delete:
                    await self._queue.delete(if_unused=False, if_empty=False)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._channel.close()


async def open_reply_inbox(
    connection: AbstractRobustConnection, queue_name: str, address: str, ttl: float
) -> AmqpInbox:
    """Declare and consume the reply queue ``queue_name``."""
    with translated("open the reply queue"):
        channel: AbstractRobustChannel = await connection.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=1000)

        async def declare() -> AbstractQueue:
            return await channel.declare_queue(
                queue_name, durable=True, arguments={"x-expires": int(ttl * 1000)}
            )

        queue = await declare()
    inbox = AmqpInbox(address, channel, queue, delete_on_close=True, declare=declare)
    await inbox.start()
    return inbox


async def open_control_inbox(
    connection: AbstractRobustConnection, exchange_name: str, queue_name: str
) -> AmqpInbox:
    """Declare an exclusive queue bound to the control exchange and consume it."""
    with translated("subscribe to control messages"):
        channel: AbstractRobustChannel = await connection.channel(publisher_confirms=False)

        async def declare() -> AbstractQueue:
            exchange = await channel.declare_exchange(exchange_name, "fanout", durable=True)
            queue = await channel.declare_queue(queue_name, exclusive=True, auto_delete=True)
            await queue.bind(exchange)
            return queue

        queue = await declare()
    inbox = AmqpInbox(queue_name, channel, queue, delete_on_close=False, declare=declare)
    await inbox.start()
    return inbox


#: Milliseconds an event queue outlives its last consumer (it is exclusive, so
#: RabbitMQ deletes it with its connection anyway; this bounds the unexpected).
_EVENT_QUEUE_EXPIRES = 60_000


async def open_event_inbox(
    connection: AbstractRobustConnection, exchange_name: str, queue_name: str
) -> AmqpInbox:
    """Declare a length-limited exclusive queue bound to the events exchange and consume it."""
    with translated("subscribe to events"):
        channel: AbstractRobustChannel = await connection.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=100)
        arguments = {
            "x-max-length": EVENT_BACKLOG,
            "x-max-length-bytes": EVENT_BACKLOG_BYTES,
            "x-overflow": "drop-head",
            "x-expires": _EVENT_QUEUE_EXPIRES,
        }

        async def declare() -> AbstractQueue:
            exchange = await channel.declare_exchange(exchange_name, "topic", durable=True)
            queue = await channel.declare_queue(
                queue_name, exclusive=True, auto_delete=True, arguments=arguments
            )
            await queue.bind(exchange, routing_key="#")
            return queue

        queue = await declare()
    inbox = AmqpInbox(
        queue_name, channel, queue, delete_on_close=False, declare=declare, backlog=EVENT_BACKLOG
    )
    await inbox.start()
    return inbox

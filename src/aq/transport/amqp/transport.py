"""The ``amqp://`` transport: RabbitMQ through aio-pika, with nothing lost.

Publishing (tasks, retries, dead letters, replies) goes through one channel
with publisher confirms: a publish returns once RabbitMQ has the message, and
task messages are persistent and ``mandatory``, so one that no queue takes is
an error rather than a silent drop. Delays go through the ladder of TTL queues
described in :mod:`aq.transport.amqp.topology`; consuming lives in
:mod:`aq.transport.amqp.consumer`; reply and control queues in
:mod:`aq.transport.amqp.inbox`; inspection and dead-letter repair in
:mod:`aq.transport.amqp.inspection`. The connection is aio-pika's robust one: it
reconnects by itself, and every operation that meets a dropped connection is
retried until ``publish_timeout`` and then fails with
:class:`aq.BrokerUnavailable`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from aq.errors import BrokerError, ConfigurationError, ConnectionLost
from aq.message import MAX_PRIORITY, new_id
from aq.transport.amqp.admin import AmqpAdmin
from aq.transport.amqp.batch import ReplyBatcher
from aq.transport.amqp.consumer import ETA, AmqpConsumer
from aq.transport.amqp.context import AmqpContext
from aq.transport.amqp.election import QueueElection
from aq.transport.amqp.errors import Unroutable
from aq.transport.amqp.inbox import open_control_inbox, open_event_inbox, open_reply_inbox
from aq.transport.amqp.settings import parse_url
from aq.transport.amqp.topology import delay_route
from aq.transport.base import Consumer, Inbox, Transport

__all__ = ["AmqpTransport"]


class AmqpTransport(Transport):
    """A connection to RabbitMQ 3.10 or newer (or a compatible AMQP 0-9-1 broker)."""

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(url)
        self.context = AmqpContext(*parse_url(url, options))
        self.settings = self.context.settings
        self.max_deliveries = self.settings.max_deliveries
        self.max_hold = self.settings.consumer_timeout
        self.names = self.context.names
        self.declarer = self.context.declarer
        self._admin = AmqpAdmin(self.context)
        self._replies = ReplyBatcher(self._publish_reply)

    @property
    def admin(self) -> AmqpAdmin:
        return self._admin

    def election(self, name: str) -> QueueElection:
        return QueueElection(self.context, name)

    async def connect(self) -> None:
        await self.context.connect()

    async def close(self) -> None:
        await self._replies.close()
        await self.context.close()

    # -- publishing ------------------------------------------------------------------

    async def publish(
        self, queue: str, body: bytes, *, priority: int = 0, eta: float | None = None
    ) -> None:
        names = await self.declarer.queue(queue)
        level = min(max(priority, 0), MAX_PRIORITY)
        if level and self.settings.queue_type == "quorum":
            raise ConfigurationError(
                f"priority {level} cannot be honoured: RabbitMQ's quorum queues have no "
                "priorities; send urgent tasks to a queue of their own instead"
            )
        exchange, routing_key, headers = "", names.work, None
        if eta is not None and (delay_ms := math.ceil((eta - time.time()) * 1000)) > 0:
            await self.declarer.delays(queue)
            exchange, routing_key = delay_route(self.names, names.work, delay_ms)
            headers = {ETA: math.ceil(eta * 1000)}
        what = f"publish to {queue}"
        publish_raw = self.context.publish_raw
        try:
            await publish_raw(
                exchange, routing_key, body, headers=headers, priority=level, what=what
            )
        except Unroutable:
            # Someone deleted the queue since this process declared it: declare
            # it again and retry once; a second return is a real error.
            self.declarer.forget()
            await (self.declarer.delays(queue) if headers else self.declarer.queue(queue))
            await publish_raw(
                exchange, routing_key, body, headers=headers, priority=level, what=what
            )

    async def open_consumer(self, queues: list[str], prefetch: int, isolated: bool) -> Consumer:
        names = [self.names.queue(q) for q in queues]
        consumer = AmqpConsumer(self.context, names, prefetch, isolated)
        self.context.consumers.add(consumer)
        try:
            await consumer.start()
        except BaseException:
            await consumer.close()
            raise
        return consumer

    # -- replies and control ---------------------------------------------------------

    async def open_inbox(self) -> Inbox:
        address = new_id()
        queue = self.names.reply_queue(address)
        return await open_reply_inbox(
            self.context.connection, queue, address, self.settings.reply_ttl
        )

    async def send_reply(self, address: str, body: bytes) -> None:
        if not address or len(address) > 128:
            raise BrokerError(f"invalid reply address {address[:140]!r}")
        await self._replies.send(self.names.reply_queue(address), body)

    async def _publish_reply(self, queue: str, body: bytes, headers: dict[str, Any] | None) -> None:
        # Not mandatory: a reply to a producer whose queue has expired is dropped.
        await self.context.publish_raw(
            "", queue, body, headers=headers, mandatory=False, what="send a reply"
        )

    async def broadcast(self, body: bytes) -> None:
        await self.declarer.control()
        await self.context.publish_raw(
            self.names.control_exchange,
            "",
            body,
            mandatory=False,
            persistent=False,
            what="broadcast",
        )

    async def subscribe_control(self) -> Inbox:
        return await open_control_inbox(
            self.context.connection, self.names.control_exchange, self.names.control_queue(new_id())
        )

    async def ping(self) -> None:
        connection = self.context.connection
        if connection.is_closed or not connection.connected.is_set():
            raise ConnectionLost("the connection to RabbitMQ is down")

    # -- events ----------------------------------------------------------------------

    async def publish_events(self, body: bytes) -> None:
        await self.declarer.events()
        await self.context.publish_raw(
            self.names.events_exchange,
            "events",
            body,
            mandatory=False,
            persistent=False,
            what="publish events",
        )

    async def subscribe_events(self) -> Inbox:
        return await open_event_inbox(
            self.context.connection, self.names.events_exchange, self.names.events_queue(new_id())
        )

    async def purge_namespace(self) -> int:
        """Empty every queue this transport declared (tests); return how many messages."""
        return await self._admin.purge_namespace()

    async def delete_namespace(self) -> int:
        """Delete every queue and exchange this transport declared (tests, benchmarks)."""
        return await self._admin.delete_namespace()

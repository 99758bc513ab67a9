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

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import aio_pika
import aiormq.abc
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection
from aio_pika.connection import make_url
from aiormq import spec

from aq.errors import BrokerError, ConfigurationError
from aq.message import MAX_PRIORITY, new_id
from aq.transport.amqp import inspection
from aq.transport.amqp.batch import ReplyBatcher
from aq.transport.amqp.consumer import ETA, AmqpConsumer
from aq.transport.amqp.declare import Declarer
from aq.transport.amqp.errors import Unroutable, retrying, translated
from aq.transport.amqp.inbox import CLOSE_TIMEOUT, open_control_inbox, open_reply_inbox
from aq.transport.amqp.inspection import DEAD_AT, DEAD_QUEUE, REASON
from aq.transport.amqp.settings import parse_url
from aq.transport.amqp.topology import Names, QueueNames, delay_route
from aq.transport.base import Consumer, DeadLetter, Inbox, QueueStats, Transport

__all__ = ["AmqpTransport"]

_CONNECT_ATTEMPT = 5.0  # seconds one connection attempt may take


class AmqpTransport(Transport):
    """A connection to RabbitMQ 3.10 or newer (or a compatible AMQP 0-9-1 broker)."""

    stores_results = False

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(url)
        self.client_url, self.settings = parse_url(url, options)
        self.max_deliveries = self.settings.max_deliveries
        self.max_hold = self.settings.consumer_timeout
        self.names = Names(self.settings.prefix)
        self.declarer = Declarer(self.names, self.settings, self.raw_channel)
        self.consumers: set[AmqpConsumer] = set()
        self._connection: AbstractRobustConnection | None = None
        self._publisher: AbstractRobustChannel | None = None
        self._replies = ReplyBatcher(self._publish_reply)

    @property
    def connection(self) -> AbstractRobustConnection:
        if self._connection is None:
            raise BrokerError("the RabbitMQ transport is not connected; call connect() first")
        return self._connection

    async def connect(self) -> None:
        if self._connection is not None:
            return

        async def attempt(left: float) -> AbstractRobustConnection:
            candidate = aio_pika.RobustConnection(make_url(self.client_url))
            try:
                await candidate.connect(timeout=min(left, _CONNECT_ATTEMPT))
            except BaseException:
                # A robust connection that failed to connect keeps trying in the
                # background unless it is closed.
                with contextlib.suppress(Exception):
                    await candidate.close()
                raise
            return candidate

        connection = await retrying("connect", attempt, self.settings.publish_timeout)
        try:
            with translated("open the publishing channel"):
                publisher = await connection.channel(publisher_confirms=True, on_return_raises=True)
        except BaseException:
            await connection.close()
            raise
        self._connection = connection
        self._publisher = publisher

    async def close(self) -> None:
        await self._replies.close()
        connection, self._connection = self._connection, None
        self._publisher = None
        self.declarer.forget()
        if connection is not None:
            for consumer in list(self.consumers):
                await consumer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await connection.close()

    @contextlib.asynccontextmanager
    async def raw_channel(self) -> AsyncIterator[aiormq.abc.AbstractChannel]:
        """A short-lived plain channel, for declarations and inspection: a refused
        operation closes it without disturbing the robust channels."""
        connection = self.connection
        with translated("open a channel"):
            await connection.ready()
            underlay = connection.transport
            if underlay is None:
                raise ConnectionError("not connected")
            channel = await underlay.connection.channel(publisher_confirms=False)
        try:
            with translated("use a channel"):
                yield channel
        finally:
            if not channel.is_closed:
                with contextlib.suppress(Exception):
                    await channel.close()

    # -- publishing ------------------------------------------------------------------

    async def publish_raw(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        headers: dict[str, Any] | None = None,
        priority: int = 0,
        mandatory: bool = True,
        persistent: bool = True,
        what: str,
    ) -> None:
        """Publish and wait for RabbitMQ's confirm, riding out short outages."""
        publisher = self._publisher
        if publisher is None:
            raise BrokerError("the RabbitMQ transport is not connected; call connect() first")
        properties = spec.Basic.Properties(
            delivery_mode=2 if persistent else 1,
            priority=priority,
            headers=headers,
            message_id=new_id(),
        )

        async def send(left: float) -> None:
            # No timeout of aiormq's own: retrying() bounds the whole attempt,
            # the wait for a reconnected channel included, with one timer.
            channel = await publisher.get_underlay_channel()
            confirmation = await channel.basic_publish(
                body,
                exchange=exchange,
                routing_key=routing_key,
                properties=properties,
                mandatory=mandatory,
            )
            if isinstance(confirmation, spec.Basic.Nack):
                raise BrokerError(f"{what}: RabbitMQ refused the message (basic.nack)")

        await retrying(what, send, self.settings.publish_timeout)

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
        try:
            await self.publish_raw(
                exchange, routing_key, body, headers=headers, priority=level, what=what
            )
        except Unroutable:
            # Someone deleted the queue since this process declared it: declare
            # it again and retry once; a second return is a real error.
            self.declarer.forget()
            await (self.declarer.delays(queue) if headers else self.declarer.queue(queue))
            await self.publish_raw(
                exchange, routing_key, body, headers=headers, priority=level, what=what
            )

    def delay_route(self, work: str, eta_ms: int) -> tuple[str, str]:
        """(exchange, routing key) for a message due at ``eta_ms`` (UNIX ms)."""
        return delay_route(self.names, work, eta_ms - math.floor(time.time() * 1000))

    async def publish_dead(
        self,
        names: QueueNames,
        body: bytes,
        headers: Mapping[str, Any],
        priority: int,
        reason: str,
    ) -> None:
        """Put a copy of a message in its queue's dead-letter queue, with the reason."""
        headers = {
            **headers,
            REASON: reason,
            DEAD_AT: int(time.time() * 1000),
            DEAD_QUEUE: names.name,
        }
        await self.publish_raw(
            self.names.dead_exchange,
            names.work,
            body,
            headers=headers,
            priority=priority,
            what=f"dead-letter a message of {names.name}",
        )

    async def consume(
        self, queues: Sequence[str], prefetch: int, *, isolated: bool = False
    ) -> Consumer:
        if not queues:
            raise BrokerError("consume() needs at least one queue")
        names = [self.names.queue(q) for q in queues]
        consumer = AmqpConsumer(self, names, max(1, prefetch), isolated)
        self.consumers.add(consumer)
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
        return await open_reply_inbox(self.connection, queue, address, self.settings.reply_ttl)

    async def send_reply(self, address: str, body: bytes) -> None:
        if not address or len(address) > 128:
            raise BrokerError(f"invalid reply address {address[:140]!r}")
        await self._replies.send(self.names.reply_queue(address), body)

    async def _publish_reply(self, queue: str, body: bytes, headers: dict[str, Any] | None) -> None:
        # Not mandatory: a reply to a producer whose queue has expired is dropped.
        await self.publish_raw(
            "", queue, body, headers=headers, mandatory=False, what="send a reply"
        )

    async def broadcast(self, body: bytes) -> None:
        await self.declarer.control()
        await self.publish_raw(
            self.names.control_exchange,
            "",
            body,
            mandatory=False,
            persistent=False,
            what="broadcast",
        )

    async def subscribe_control(self) -> Inbox:
        return await open_control_inbox(
            self.connection, self.names.control_exchange, self.names.control_queue(new_id())
        )

    async def store_result(self, task_id: str, body: bytes, ttl: float) -> None:
        raise BrokerError("the RabbitMQ transport keeps no results")

    async def fetch_result(self, task_id: str) -> bytes | None:
        raise BrokerError("the RabbitMQ transport keeps no results")

    # -- inspection ------------------------------------------------------------------

    async def stats(self, queue: str) -> QueueStats:
        stats = await inspection.stats(self, self.names.queue(queue))
        held = sum(c.held(queue) for c in self.consumers if not c.isolated)
        held_isolated = sum(c.held(queue) for c in self.consumers if c.isolated)
        return QueueStats(
            queue,
            stats.ready,
            stats.delayed,
            held,
            stats.dead,
            stats.consumers,
            stats.isolated + held_isolated,
        )

    async def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        return await inspection.dead_letters(self, self.names.queue(queue), limit)

    async def purge(self, queue: str) -> int:
        return await inspection.purge(self, self.names.queue(queue))

    async def requeue_dead(self, queue: str, ids: Sequence[str] | None = None) -> int:
        names = await self.declarer.queue(queue)
        return await inspection.requeue_dead(self, names, ids)

    async def purge_dead(self, queue: str) -> int:
        return await inspection.purge_dead(self, self.names.queue(queue))

    async def purge_namespace(self) -> int:
        """Empty every queue this transport declared (tests); return how many messages."""
        return await inspection.purge_declared(self)

    async def delete_namespace(self) -> int:
        """Delete every queue and exchange this transport declared (tests, benchmarks)."""
        return await inspection.delete_declared(self)

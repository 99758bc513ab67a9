"""What every part of the RabbitMQ backend shares: the connection, settings,
names, declarations, and publishing with confirms.

The transport, its consumers, inboxes and admin all depend on one
:class:`AmqpContext`, never on each other. It opens aio-pika's robust
connection and the confirming publisher channel, hands out short-lived plain
channels for declarations and inspection, and publishes every message aq sends
(tasks, retries, dead letters, copies, replies), riding out short outages.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar

import aio_pika
import aiormq.abc
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection
from aio_pika.connection import make_url
from aiormq import spec

from aq.errors import BrokerError
from aq.message import new_id
from aq.transport.amqp.declare import Declarer
from aq.transport.amqp.errors import retrying, translated
from aq.transport.amqp.settings import AmqpSettings
from aq.transport.amqp.topology import Names, QueueNames, delay_route
from aq.transport.kit import connected

__all__ = ["CLOSE_TIMEOUT", "DEAD_AT", "DEAD_QUEUE", "REASON", "AmqpContext", "Holder"]

T = TypeVar("T")

_CONNECT_ATTEMPT = 5.0  # seconds one connection attempt may take
#: Seconds a close may take before it is abandoned (the server cleans up).
CLOSE_TIMEOUT = 2.0
#: Headers of a dead letter: why, when (UNIX ms) and from which aq queue.
REASON = "x-aq-reason"
DEAD_AT = "x-aq-dead-at"
DEAD_QUEUE = "x-aq-queue"


class Holder(Protocol):
    """A consumer, as the admin counts what it holds."""

    isolated: bool

    def held(self, name: str) -> int: ...

    async def close(self) -> None: ...


class AmqpContext:
    """One RabbitMQ connection and what is derived from its URL."""

    def __init__(self, client_url: str, settings: AmqpSettings) -> None:
        self.client_url = client_url
        self.settings = settings
        self.names = Names(settings.prefix)
        self.declarer = Declarer(self.names, settings, self.raw_channel)
        #: The consumers open on this connection (their unacked deliveries are
        #: counted by the admin: RabbitMQ reports none per queue).
        self.consumers: set[Holder] = set()
        self._connection: AbstractRobustConnection | None = None
        self._publisher: AbstractRobustChannel | None = None

    @property
    def connection(self) -> AbstractRobustConnection:
        return connected(self._connection, "RabbitMQ transport")

    async def retrying(self, what: str, operation: Callable[[float], Awaitable[T]]) -> T:
        """Run ``operation(seconds_left)`` through outages of up to ``publish_timeout``."""
        return await retrying(what, operation, self.settings.publish_timeout)

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

        connection = await self.retrying("connect", attempt)
        try:
            with translated("open the publishing channel"):
                publisher = await connection.channel(publisher_confirms=True, on_return_raises=True)
        except BaseException:
            await connection.close()
            raise
        self._connection = connection
        self._publisher = publisher

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        self._publisher = None
        self.declarer.forget()
        if connection is not None:
            for consumer in list(self.consumers):
                await consumer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await connection.close()

    async def open_channel(self) -> aiormq.abc.AbstractChannel:
        """A plain channel on the current connection, which aio-pika neither restores
        nor closes on its own: the caller closes it."""
        connection = self.connection
        with translated("open a channel"):
            await connection.ready()
            underlay = connection.transport
            if underlay is None:
                raise ConnectionError("not connected")
            return await underlay.connection.channel(publisher_confirms=False)

    @contextlib.asynccontextmanager
    async def raw_channel(self) -> AsyncIterator[aiormq.abc.AbstractChannel]:
        """A short-lived plain channel, for declarations and inspection: a refused
        operation closes it without disturbing the robust channels."""
        channel = await self.open_channel()
        try:
            with translated("use a channel"):
                yield channel
        finally:
            if not channel.is_closed:
                with contextlib.suppress(Exception):
                    await channel.close()

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
        publisher = connected(self._publisher, "RabbitMQ transport")
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

        await self.retrying(what, send)

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

"""Declaring aq's RabbitMQ objects, once per process and queue.

Producers and workers both declare what they use (declaring is idempotent in
AMQP), so neither depends on the other having started first. A queue's work,
isolation and dead-letter queues are declared on its first publish or consume; its 32
delay levels on its first delayed publish (and always by a worker, so retries
never wait for them). Declarations are sent without waiting for each reply
and checked by one synchronous call at the end, so the whole delay ladder
costs about one round trip. What has been declared is remembered until
:meth:`Declarer.forget` (a publish came back unroutable: someone deleted a
queue).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import aiormq.abc

from aq.transport.amqp.settings import AmqpSettings
from aq.transport.amqp.topology import (
    LEVELS,
    Names,
    QueueNames,
    dead_arguments,
    delay_arguments,
    down_pattern,
    level_pattern,
    out_pattern,
    work_arguments,
)

__all__ = ["Declarer"]

ChannelFactory = Callable[[], AbstractAsyncContextManager[aiormq.abc.AbstractChannel]]


class Declarer:
    """Declares and remembers queues, exchanges and bindings; see the module docstring."""

    def __init__(self, names: Names, settings: AmqpSettings, channel: ChannelFactory) -> None:
        self.names = names
        self.settings = settings
        self._channel = channel
        self._queues: dict[str, QueueNames] = {}
        self._delays: set[str] = set()
        self._shared = False
        self._control = False
        self._events = False
        self._lock = asyncio.Lock()
        #: Every queue name this declarer has declared, for delete_declared().
        self.declared: set[str] = set()

    def forget(self) -> None:
        self._queues.clear()
        self._delays.clear()
        self._shared = self._control = self._events = False

    async def control(self) -> None:
        """Declare the fanout exchange for control messages."""
        if self._control:
            return
        async with self._channel() as channel:
            await channel.exchange_declare(
                self.names.control_exchange, exchange_type="fanout", durable=True
            )
        self._control = True

    async def events(self) -> None:
        """Declare the topic exchange for monitoring events."""
        if self._events:
            return
        async with self._channel() as channel:
            await channel.exchange_declare(
                self.names.events_exchange, exchange_type="topic", durable=True
            )
        self._events = True

    async def queue(self, name: str) -> QueueNames:
        """Declare queue ``name``'s work and dead-letter queues (if not done yet)."""
        known = self._queues.get(name)
        if known is not None:
            return known
        queue = self.names.queue(name)
        async with self._lock:
            if name not in self._queues:
                self.declared.add(name)
                async with self._channel() as channel:
                    await self._declare_queue(channel, queue)
                self._queues[name] = queue
        return queue

    async def delays(self, name: str) -> QueueNames:
        """Declare queue ``name``, its delay levels and the shared delay exchanges."""
        queue = await self.queue(name)
        if name in self._delays:
            return queue
        async with self._lock:
            if name not in self._delays:
                async with self._channel() as channel:
                    if not self._shared:
                        await self._declare_delay_exchanges(channel)
                    await self._declare_delay_queues(channel, queue)
                    # Confirms every declaration sent without waiting: had one been
                    # refused, the server would have closed the channel by now.
                    await channel.queue_declare(queue.delays[-1], passive=True)
                self._shared = True
                self._delays.add(name)
        return queue

    async def _declare_queue(self, channel: aiormq.abc.AbstractChannel, queue: QueueNames) -> None:
        names, settings = self.names, self.settings
        await channel.exchange_declare(names.dead_exchange, exchange_type="direct", durable=True)
        await channel.queue_declare(
            queue.dead, durable=True, arguments=dead_arguments(settings.queue_type)
        )
        await channel.queue_bind(queue.dead, names.dead_exchange, routing_key=queue.work)
        arguments = work_arguments(names, queue, settings.queue_type, settings.max_deliveries)
        for name in (queue.work, queue.isolated):
            await channel.queue_declare(name, durable=True, arguments=arguments)

    async def _declare_delay_exchanges(self, channel: aiormq.abc.AbstractChannel) -> None:
        names = self.names
        for level in range(-1, LEVELS):
            await channel.exchange_declare(
                names.delay_exchange(level), exchange_type="topic", durable=True, nowait=True
            )
        for level in range(LEVELS):
            await channel.exchange_bind(
                names.delay_exchange(level - 1),
                names.delay_exchange(level),
                routing_key=down_pattern(level),
                nowait=True,
            )

    async def _declare_delay_queues(
        self, channel: aiormq.abc.AbstractChannel, queue: QueueNames
    ) -> None:
        names, queue_type = self.names, self.settings.queue_type
        for level, delay_queue in enumerate(queue.delays):
            await channel.queue_declare(
                delay_queue,
                durable=True,
                arguments=delay_arguments(names, level, queue_type),
                nowait=True,
            )
            await channel.queue_bind(
                delay_queue,
                names.delay_exchange(level),
                routing_key=level_pattern(level, "1", queue.work),
                nowait=True,
            )
        await channel.queue_bind(
            queue.work, names.delay_exchange(-1), routing_key=out_pattern(queue.work), nowait=True
        )

"""Consuming queues straight through aiormq, on one of aio-pika's robust channels.

aio-pika's own consumers wrap every delivery in an ``IncomingMessage`` and run
the callback in one more task; aq needs neither, and on a worker draining
thousands of messages a second they cost a tenth of its time. aio-pika still
restores the channel after a reconnect (its prefetch, and the queues declared
on it); :class:`DirectConsumers` then starts its consumers again on the new
channel.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import aiormq.abc
from aio_pika.abc import AbstractRobustChannel

from aq.transport.amqp.errors import translated

__all__ = ["DirectConsumers", "OnMessage"]

OnMessage = Callable[[aiormq.abc.DeliveredMessage], Coroutine[Any, Any, Any]]


class DirectConsumers:
    """Consumers of ``queues`` (name, callback) on ``channel``, kept across reconnects."""

    def __init__(self, channel: AbstractRobustChannel, queues: list[tuple[str, OnMessage]]) -> None:
        self._channel = channel
        self._queues = queues
        self._tags: list[tuple[aiormq.abc.AbstractChannel, str]] = []
        self._stopped = False

    async def start(self) -> None:
        await self._consume()
        self._channel.reopen_callbacks.add(self._reopened)

    async def _consume(self) -> None:
        underlay = await self._channel.get_underlay_channel()
        self._tags = []
        for queue, callback in self._queues:
            ok = await underlay.basic_consume(queue, callback)
            self._tags.append((underlay, ok.consumer_tag or ""))

    async def _reopened(self, *_: object) -> None:
        if not self._stopped:
            with translated("consume again after a reconnect"):
                await self._consume()

    async def cancel(self) -> None:
        """Stop consuming (deliveries already sent stay unacked until settled)."""
        self._stopped = True
        for underlay, tag in self._tags:
            if not underlay.is_closed:
                await underlay.basic_cancel(tag)

"""A Redis delivery: one claimed stream entry, settled by one atomic script.

:class:`RedisDelivery` knows which script settles it each way (ack, reply and
ack, requeue, return, isolate, dead-letter) and with which keys; its consumer
(:class:`Settler`, the :class:`~aq.transport.redis.consumer.RedisConsumer`)
runs the script once, through outages.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Any, Protocol

from aq.errors import BrokerError
from aq.transport.kit import OnceDelivery
from aq.transport.redis.connection import group_gone, translated
from aq.transport.redis.context import RedisContext
from aq.transport.redis.keys import GROUP, QueueKeys

__all__ = ["RedisDelivery", "Settler"]


class Settler(Protocol):
    """The consumer a delivery belongs to, as the delivery uses it."""

    context: RedisContext
    #: The consumer's name in the consumer groups.
    name: str

    def forget(self, delivery: Any) -> None: ...

    def settle(
        self,
        delivery: RedisDelivery,
        script: str,
        keys: list[Any],
        args: list[Any],
        merged: bool,
    ) -> Awaitable[None]: ...


class RedisDelivery(OnceDelivery):
    """An entry claimed by this consumer; settles with one atomic script."""

    __slots__ = ("_consumer", "entry_id", "keys", "stream")

    def __init__(
        self,
        consumer: Settler,
        keys: QueueKeys,
        stream: str,
        entry_id: str,
        body: bytes,
        delivery_count: int,
    ) -> None:
        super().__init__(consumer, body, keys.name, delivery_count)
        self._consumer = consumer
        self.keys = keys
        self.stream = stream
        self.entry_id = entry_id

    def _run(
        self, script: str, keys: list[Any], args: list[Any], merged: bool = False
    ) -> Awaitable[None]:
        # The consumer settles it once, in one coroutine: the hot path.
        return self._consumer.settle(self, script, keys, args, merged)

    async def ack(self) -> None:
        if self._consumer.context.cluster:
            await self._run("ACK", [self.stream], [GROUP, self.entry_id])
        else:
            await self._run("ACK_MANY", [self.stream], [GROUP, self.entry_id], merged=True)

    async def reply_and_ack(self, reply_stream: str, alive: str, body: bytes, ttl_ms: int) -> None:
        """Send a reply and settle, in one step (single-node Redis only)."""
        await self._run(
            "REPLY_ACK_MANY",
            [self.stream, reply_stream, alive],
            [GROUP, self.entry_id, body, ttl_ms],
            merged=True,
        )

    async def requeue(self) -> None:
        await self._run(
            "REQUEUE", [self.stream], [GROUP, self.entry_id, self.body, self.delivery_count]
        )

    async def release(self) -> None:
        """Return the message on shutdown; this delivery does not count."""
        await self._run(
            "REQUEUE", [self.stream], [GROUP, self.entry_id, self.body, self.delivery_count - 1]
        )

    async def isolate(self) -> None:
        await self._run(
            "ISOLATE", [self.stream, self.keys.isolated], [GROUP, self.entry_id, self.body]
        )

    async def dead_letter(self, reason: str) -> None:
        await self._run(
            "DEAD_LETTER",
            [self.stream, self.keys.dead],
            [GROUP, self.entry_id, self.body, reason, time.time(), self.keys.name],
        )

    # abandon(): left pending under this consumer's name, reclaimed after the
    # visibility timeout.

    async def keep_alive(self) -> None:
        if self.settled:
            return
        stream, name, entry = self.stream, self._consumer.name, self.entry_id
        try:
            with translated("refresh a claim"):
                await self._consumer.context.batcher.run(
                    lambda pipe: pipe.xclaim(stream, GROUP, name, 0, [entry], justid=True)
                )
        except BrokerError as exc:
            if not group_gone(exc):
                raise
            # Someone deleted the stream or group: there is no claim left to keep.

"""The ``redis://`` transport: queues on Redis Streams with consumer groups.

A queue is one stream per priority level plus a sorted set of delayed
messages and a dead-letter stream (see :mod:`aq.transport.redis.keys`).
Publishing is one XADD (or ZADD when delayed); consuming, claiming, settling
and moving due messages live in :mod:`aq.transport.redis.consumer`. Replies go
to a stream per producer that exists only while its liveness key does, so a
producer that died leaves nothing behind for longer than ``reply_ttl``.
Control messages (cancellations) go to one capped stream that every worker
reads from where it left off, so a reconnecting worker misses none. Queue
administration is :mod:`aq.transport.redis.admin`, and the store on the same
server :mod:`aq.transport.redis.store`.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping
from typing import Any

from aq.message import MAX_PRIORITY, new_id
from aq.transport.base import EVENT_BACKLOG, Consumer, Delivery, Inbox, Transport
from aq.transport.redis.admin import RedisAdmin
from aq.transport.redis.connection import parse_url, retrying, translated
from aq.transport.redis.consumer import RedisConsumer
from aq.transport.redis.context import RedisContext
from aq.transport.redis.delivery import RedisDelivery
from aq.transport.redis.inbox import ControlInbox, EventInbox, ReplyInbox
from aq.transport.redis.store import RedisStore

__all__ = ["RedisTransport"]

log = logging.getLogger("aq.redis")

_CONTROL_MAXLEN = 10_000
_CONTROL_REPLAY_MS = 3_600_000  # a new worker honours cancellations of the last hour


class RedisTransport(Transport):
    """A connection to Redis (or a Redis-compatible server) 6.2 or newer."""

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(url)
        self.context = RedisContext(*parse_url(url, options))
        self.settings = self.context.settings
        self.heartbeat_interval = self.settings.visibility_timeout / 3
        self.max_deliveries = self.settings.max_deliveries
        self._admin = RedisAdmin(self.context)

    @property
    def admin(self) -> RedisAdmin:
        return self._admin

    def store(self) -> RedisStore:
        return RedisStore(self.context)

    async def connect(self) -> None:
        await self.context.connect()

    async def close(self) -> None:
        await self.context.close()

    async def delete_namespace(self) -> int:
        """Delete every key under this transport's prefix (tests, benchmarks); return how many."""
        return await self._admin.delete_namespace()

    # -- producing -------------------------------------------------------------------

    async def publish(
        self, queue: str, body: bytes, *, priority: int = 0, eta: float | None = None
    ) -> None:
        context = self.context
        keys = context.queue_keys(queue)
        batcher = context.batcher
        level = min(max(priority, 0), MAX_PRIORITY)
        if eta is not None and eta > time.time():
            # The nonce comes from the body, so a publish sent again after its answer
            # was lost (a retry's, say) adds the same member, not a second copy.
            nonce = hashlib.blake2b(body, digest_size=8).hexdigest().encode()
            member = b"%d:%s:%s" % (level, nonce, body)

            async def delay() -> Any:
                return await batcher.run(lambda pipe: pipe.zadd(keys.delayed, {member: eta}))

            await retrying(f"publish to {queue}", delay, self.settings.publish_timeout)
            return
        stream = keys.streams[level]
        script = context.script("PUBLISH_MANY")

        async def add() -> Any:
            if context.cluster:  # redis-py's cluster pipelines refuse scripts
                return await batcher.run(lambda pipe: pipe.xadd(stream, {"b": body, "n": 0}))
            return await batcher.run_merged(script, [stream], [body])

        await retrying(f"publish to {queue}", add, self.settings.publish_timeout)

    async def open_consumer(self, queues: list[str], prefetch: int, isolated: bool) -> Consumer:
        keys = [self.context.queue_keys(q) for q in queues]
        if isolated:
            keys = [k.isolation() for k in keys]
        consumer = RedisConsumer(self.context, keys, prefetch, self.heartbeat_interval)
        await consumer.start()
        return consumer

    # -- replies ---------------------------------------------------------------------

    async def open_inbox(self) -> Inbox:
        inbox = ReplyInbox(self.context, new_id())
        await inbox.start()
        return inbox

    async def send_reply(self, address: str, body: bytes) -> None:
        reply_stream, alive = self.context.keys.inbox(address)
        ttl_ms = int(self.settings.reply_ttl * 1000)

        async def push() -> Any:
            return await self.context.run_script("REPLY", [reply_stream, alive], [body, ttl_ms])

        await retrying("send a reply", push, self.settings.publish_timeout)

    async def reply_and_ack(self, delivery: Delivery, address: str, body: bytes) -> None:
        if self.context.cluster or not isinstance(delivery, RedisDelivery):
            # A cluster keeps the reply and the queue in different slots: two steps.
            await super().reply_and_ack(delivery, address, body)
            return
        reply_stream, alive = self.context.keys.inbox(address)
        await delivery.reply_and_ack(reply_stream, alive, body, int(self.settings.reply_ttl * 1000))

    # -- control ---------------------------------------------------------------------

    async def broadcast(self, body: bytes) -> None:
        async def add() -> Any:
            return await self.context.client.xadd(
                self.context.keys.control, {"b": body}, maxlen=_CONTROL_MAXLEN, approximate=True
            )

        await retrying("broadcast", add, self.settings.publish_timeout)

    async def subscribe_control(self) -> Inbox:
        start = f"{max(0, int(time.time() * 1000) - _CONTROL_REPLAY_MS)}-0"
        return ControlInbox(self.context, start)

    async def ping(self) -> None:
        with translated("ping Redis"):
            await self.context.client.ping()

    # -- events ----------------------------------------------------------------------

    async def publish_events(self, body: bytes) -> None:
        stream, batcher = self.context.keys.events, self.context.batcher

        async def add() -> Any:
            return await batcher.run(
                lambda pipe: pipe.xadd(stream, {"b": body}, maxlen=EVENT_BACKLOG, approximate=True)
            )

        await retrying("publish events", add, self.settings.publish_timeout)

    async def subscribe_events(self) -> Inbox:
        context = self.context

        async def newest() -> Any:
            return await context.client.xrevrange(context.keys.events, count=1)

        entries = await retrying("subscribe to events", newest, self.settings.publish_timeout)
        start = entries[0][0].decode() if entries else "0-0"
        return EventInbox(context, start)

    # -- inspection ------------------------------------------------------------------

"""The ``redis://`` transport: queues on Redis Streams with consumer groups.

A queue is one stream per priority level plus a sorted set of delayed
messages and a dead-letter stream (see :mod:`aq.transport.redis.keys`).
Publishing is one XADD (or ZADD when delayed); consuming, claiming, settling
and moving due messages live in :mod:`aq.transport.redis.consumer`. Replies go
to a stream per producer that exists only while its liveness key does, so a
producer that died leaves nothing behind for longer than ``reply_ttl``.
Control messages (cancellations) go to one capped stream that every worker
reads from where it left off, so a reconnecting worker misses none.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from aq.errors import BrokerError
from aq.message import MAX_PRIORITY, new_id
from aq.transport.base import Consumer, DeadLetter, Delivery, Inbox, QueueStats, Transport
from aq.transport.redis import scripts
from aq.transport.redis.batch import Batcher
from aq.transport.redis.connection import (
    make_client,
    parse_url,
    retrying,
    translated,
)
from aq.transport.redis.inbox import ControlInbox, ReplyInbox
from aq.transport.redis.keys import GROUP, Keys, QueueKeys

__all__ = ["RedisTransport"]

log = logging.getLogger("aq.redis")

_CONTROL_MAXLEN = 10_000
_CONTROL_REPLAY_MS = 3_600_000  # a new worker honours cancellations of the last hour
_BLOCK_MS = 1_000


class RedisTransport(Transport):
    """A connection to Redis (or a Redis-compatible server) 6.2 or newer."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.client_url, self.settings = parse_url(url)
        self.keys = Keys(self.settings.prefix)
        self.heartbeat_interval = self.settings.visibility_timeout / 3
        self.max_deliveries = self.settings.max_deliveries
        self._client: Redis | None = None
        self._scripts: dict[str, Any] = {}
        self._batcher: Batcher | None = None
        self._queue_keys: dict[str, QueueKeys] = {}
        self._sentinels: list[Redis] = []
        self.cluster = False

    @property
    def client(self) -> Redis:
        if self._client is None:
            raise BrokerError("the Redis transport is not connected; call connect() first")
        return self._client

    def script(self, name: str) -> Any:
        return self._scripts[name]

    @property
    def batcher(self) -> Batcher:
        """Sends the commands of one event-loop turn in one pipeline."""
        if self._batcher is None:
            raise BrokerError("the Redis transport is not connected; call connect() first")
        return self._batcher

    async def run_script(self, name: str, keys: list[Any], args: list[Any]) -> Any:
        """Run a script in the next pipeline this event-loop turn sends."""
        script = self._scripts[name]
        if self.cluster:  # cluster pipelines refuse EVALSHA: run it on its own
            return await script(keys=keys, args=args)
        return await self.batcher.run_script(script, keys, args)

    async def connect(self) -> None:
        if self._client is not None:
            return
        client, self._sentinels = make_client(self.client_url, self.settings)
        try:
            await retrying("connect", client.ping, self.settings.publish_timeout)
        except BaseException:
            await self._close_clients(client)
            raise
        for name in scripts.__all__:
            self._scripts[name] = client.register_script(getattr(scripts, name))
        self._client = client
        self._batcher = Batcher(client)
        self.cluster = isinstance(client, RedisCluster)

    async def close(self) -> None:
        client, self._client = self._client, None
        self._batcher = None
        if client is not None:
            await self._close_clients(client)

    async def _close_clients(self, client: Redis) -> None:
        await client.aclose()
        for sentinel in self._sentinels:
            await sentinel.aclose()
        self._sentinels = []

    def queue_keys(self, queue: str) -> QueueKeys:
        keys = self._queue_keys.get(queue)
        if keys is None:  # building the names took a sixth of a producer's time per kiq
            keys = self._queue_keys[queue] = self.keys.queue(queue)
        return keys

    # -- producing -------------------------------------------------------------------

    async def publish(
        self, queue: str, body: bytes, *, priority: int = 0, eta: float | None = None
    ) -> None:
        keys = self.queue_keys(queue)
        batcher = self.batcher
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
        script = self._scripts["PUBLISH_MANY"]

        async def add() -> Any:
            if self.cluster:  # redis-py's cluster pipelines refuse scripts
                return await batcher.run(lambda pipe: pipe.xadd(stream, {"b": body, "n": 0}))
            return await batcher.run_merged(script, [stream], [body])

        await retrying(f"publish to {queue}", add, self.settings.publish_timeout)

    async def consume(
        self, queues: Sequence[str], prefetch: int, *, isolated: bool = False
    ) -> Consumer:
        from aq.transport.redis.consumer import RedisConsumer

        if not queues:
            raise BrokerError("consume() needs at least one queue")
        keys = [self.queue_keys(q) for q in queues]
        if isolated:
            keys = [k.isolation() for k in keys]
        consumer = RedisConsumer(self, keys, max(1, prefetch))
        await consumer.start()
        return consumer

    async def ensure_groups(self, keys: QueueKeys) -> None:
        """Create the consumer group on each of the queue's streams if missing."""
        for stream in keys.streams:
            try:
                with translated("create consumer group"):
                    await self.client.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except BrokerError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    # -- replies ---------------------------------------------------------------------

    async def open_inbox(self) -> Inbox:
        inbox = ReplyInbox(self, new_id())
        await inbox.start()
        return inbox

    async def send_reply(self, address: str, body: bytes) -> None:
        reply_stream, alive = self.keys.inbox(address)
        ttl_ms = int(self.settings.reply_ttl * 1000)

        async def push() -> Any:
            return await self.run_script("REPLY", [reply_stream, alive], [body, ttl_ms])

        await retrying("send a reply", push, self.settings.publish_timeout)

    async def reply_and_ack(self, delivery: Delivery, address: str, body: bytes) -> None:
        from aq.transport.redis.consumer import RedisDelivery

        if self.cluster or not isinstance(delivery, RedisDelivery):
            # A cluster keeps the reply and the queue in different slots: two steps.
            await super().reply_and_ack(delivery, address, body)
            return
        reply_stream, alive = self.keys.inbox(address)
        await delivery.reply_and_ack(reply_stream, alive, body, int(self.settings.reply_ttl * 1000))

    async def store_result(self, task_id: str, body: bytes, ttl: float) -> None:
        key = self.keys.result(task_id)
        batcher = self.batcher

        async def store() -> Any:
            return await batcher.run(lambda pipe: pipe.set(key, body, px=int(ttl * 1000)))

        await retrying("store a result", store, self.settings.publish_timeout)

    async def fetch_result(self, task_id: str) -> bytes | None:
        with translated("fetch a result"):
            body: Any = await self.client.get(self.keys.result(task_id))
        return body if isinstance(body, bytes) else None

    # -- control ---------------------------------------------------------------------

    async def broadcast(self, body: bytes) -> None:
        async def add() -> Any:
            return await self.client.xadd(
                self.keys.control, {"b": body}, maxlen=_CONTROL_MAXLEN, approximate=True
            )

        await retrying("broadcast", add, self.settings.publish_timeout)

    async def subscribe_control(self) -> Inbox:
        start = f"{max(0, int(time.time() * 1000) - _CONTROL_REPLAY_MS)}-0"
        return ControlInbox(self, start)

    # -- inspection ------------------------------------------------------------------

    async def delete_namespace(self) -> int:
        """Delete every key under this transport's prefix (tests, benchmarks); return how many."""
        client = self.client
        with translated("delete the namespace"):
            keys = [k async for k in client.scan_iter(match=f"{self.keys.prefix}:*", count=1000)]
            if keys:
                await client.delete(*keys)
        return len(keys)

    async def stats(self, queue: str) -> QueueStats:
        keys = self.queue_keys(queue)
        with translated(f"stats of {queue}"):
            async with self.client.pipeline(transaction=False) as pipe:
                for stream in keys.streams:
                    pipe.xlen(stream)
                for stream in keys.streams:
                    pipe.xpending(stream, GROUP)
                pipe.zcard(keys.delayed)
                pipe.xlen(keys.dead)
                pipe.xlen(keys.isolated)
                for stream in keys.streams:
                    pipe.xinfo_groups(stream)
                results = await pipe.execute(raise_on_error=False)
        n = len(keys.streams)
        lengths = results[:n]
        pending = [_pending_count(r) for r in results[n : 2 * n]]
        delayed, dead, isolated = results[2 * n : 2 * n + 3]
        consumers = max((_consumer_count(r) for r in results[2 * n + 3 :]), default=0)
        total = sum(x for x in lengths if isinstance(x, int))
        unacked = sum(pending)
        return QueueStats(
            queue, total - unacked, int(delayed), unacked, int(dead), consumers, int(isolated)
        )

    async def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        keys = self.queue_keys(queue)
        with translated(f"read dead letters of {queue}"):
            entries: Any = await self.client.xrange(keys.dead, count=limit)
        letters = []
        for entry_id, fields in entries:
            letters.append(
                DeadLetter(
                    queue=queue,
                    body=fields.get(b"b", b""),
                    reason=fields.get(b"reason", b"").decode("utf-8", "replace"),
                    dead_at=float(fields.get(b"at", 0) or 0),
                    id=entry_id.decode(),
                )
            )
        return letters

    async def purge(self, queue: str) -> int:
        keys = self.queue_keys(queue)
        before = await self.stats(queue)
        with translated(f"purge {queue}"):
            async with self.client.pipeline(transaction=False) as pipe:
                for stream in (*keys.streams, keys.isolated):
                    pipe.xtrim(stream, maxlen=0, approximate=False)
                pipe.delete(keys.delayed)
                await pipe.execute()
        return before.ready + before.delayed + before.isolated

    async def requeue_dead(self, queue: str, ids: Sequence[str] | None = None) -> int:
        letters = await self.dead_letters(queue, limit=1_000_000)
        chosen = [d for d in letters if ids is None or d.id in set(ids)]
        keys = self.queue_keys(queue)
        with translated(f"requeue dead letters of {queue}"):
            async with self.client.pipeline(transaction=False) as pipe:
                for letter in chosen:
                    pipe.xadd(keys.streams[0], {"b": letter.body, "n": 0})
                    pipe.xdel(keys.dead, letter.id)
                await pipe.execute()
        return len(chosen)

    async def purge_dead(self, queue: str) -> int:
        keys = self.queue_keys(queue)
        with translated(f"purge dead letters of {queue}"):
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.xlen(keys.dead)
                pipe.delete(keys.dead)
                count, _ = await pipe.execute()
        return int(count)


def _pending_count(result: Any) -> int:
    if isinstance(result, dict):
        return int(result.get("pending", 0))
    return 0  # NOGROUP: the stream was never consumed


def _consumer_count(result: Any) -> int:
    if isinstance(result, list):
        for group in result:
            if isinstance(group, dict) and group.get("name") in (GROUP, GROUP.encode()):
                return int(group.get("consumers", 0))
    return 0

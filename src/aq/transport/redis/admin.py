"""Administering Redis queues: counts by state, dead letters, purging.

Reads each queue's streams, delayed set and dead-letter stream (see
:mod:`aq.transport.redis.keys`) through the shared :class:`RedisContext`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis

from aq.transport.admin import Admin, DeadLetter, QueueStats
from aq.transport.redis.connection import translated
from aq.transport.redis.context import RedisContext
from aq.transport.redis.keys import GROUP, QueueKeys

__all__ = ["RedisAdmin"]


class RedisAdmin(Admin):
    """Queue administration on Redis."""

    def __init__(self, context: RedisContext) -> None:
        self._context = context

    def queue_keys(self, queue: str) -> QueueKeys:
        return self._context.queue_keys(queue)

    @property
    def client(self) -> Redis:
        return self._context.client

    async def delete_namespace(self) -> int:
        """Delete every key under this transport's prefix (tests, benchmarks); return how many."""
        client = self.client
        with translated("delete the namespace"):
            keys = [
                k
                async for k in client.scan_iter(match=f"{self._context.keys.prefix}:*", count=1000)
            ]
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

"""A worker app for the chord crash test: members announce their starts, the body
records each run, and a worker started with ``AQ_TEST_DIE_IN_FINISH_JOIN`` kills
itself with SIGKILL the first time it completes a chord: after it sent the
body, before it recorded that and before it acked the member that completed
it. Members hold for their ``seconds`` only in a worker started with
``AQ_TEST_SLOW_MEMBERS``.

``AQ_BROKER_URL`` names the broker, ``AQ_TEST_STORE_URL`` the store (Redis), and
``AQ_TEST_RECORD_URL`` the Redis database of the records (lists ``started`` and
``bodies``, and ``died`` once a worker died completing the chord).
"""

from __future__ import annotations

import asyncio
import os
import signal

from redis.asyncio import BlockingConnectionPool, Redis

import aq
from aq.transport.redis.store import RedisStore


class DyingStore(RedisStore):
    """A Redis store whose ``finish_join`` kills this process, when told to."""

    async def finish_join(self, key: str, *, ttl: float) -> None:
        if os.environ.get("AQ_TEST_DIE_IN_FINISH_JOIN") and await _client().set("died", 1, nx=True):
            os.kill(os.getpid(), signal.SIGKILL)
        await super().finish_join(key, ttl=ttl)


broker = aq.Broker(store=DyingStore(os.environ.get("AQ_TEST_STORE_URL", "redis://127.0.0.1")))
_record: Redis | None = None


def _client() -> Redis:
    global _record
    if _record is None:
        pool = BlockingConnectionPool.from_url(os.environ["AQ_TEST_RECORD_URL"], timeout=None)
        _record = Redis.from_pool(pool)
    return _record


@broker.task(name="chords.member")
async def member(i: int, seconds: float) -> int:
    """Announce the start, hold for ``seconds``, return ``i``."""
    await _client().rpush("started", i)
    if os.environ.get("AQ_TEST_SLOW_MEMBERS"):
        await asyncio.sleep(seconds)
    return i


@broker.task(name="chords.body", queue="bodies")
async def body(results: list[int]) -> int:
    """Record this run (how many results, their sum); return the sum."""
    await _client().rpush("bodies", f"{len(results)}:{sum(results)}")
    return sum(results)

"""A worker app for the crash tests: each run is recorded in Redis.

``AQ_BROKER_URL`` names the broker; ``AQ_TEST_RECORD_URL`` the Redis database
where every execution is appended (list ``runs``) and every start announced
(list ``started``), so a test can count duplicates across processes.
"""

from __future__ import annotations

import asyncio
import os

from redis.asyncio import BlockingConnectionPool, Redis

import aq

broker = aq.Broker()
_record: Redis | None = None


def _client() -> Redis:
    global _record
    if _record is None:
        pool = BlockingConnectionPool.from_url(os.environ["AQ_TEST_RECORD_URL"], timeout=None)
        _record = Redis.from_pool(pool)
    return _record


@broker.task(name="reliable.work")
async def work(i: int, seconds: float) -> int:
    """Announce the start, hold for ``seconds``, record the run, return ``i``."""
    await _client().rpush("started", i)
    await asyncio.sleep(seconds)
    await _client().rpush("runs", i)
    return i

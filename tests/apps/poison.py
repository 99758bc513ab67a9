"""A worker app for the crash-isolation tests: good tasks, and one that kills its process.

``AQ_BROKER_URL`` names the broker; ``AQ_TEST_RECORD_URL`` the Redis database
where every start is recorded (lists ``good`` and ``poison``), so a test can
count runs across processes.
"""

from __future__ import annotations

import asyncio
import os

from redis.asyncio import Redis

import aq

broker = aq.Broker()


def _record() -> Redis:
    return Redis.from_url(os.environ["AQ_TEST_RECORD_URL"])


@broker.task(name="poison.good")
async def good(i: int, seconds: float) -> int:
    """Record the start, take ``seconds``, return ``i``."""
    async with _record() as record:
        await record.rpush("good", i)
    await asyncio.sleep(seconds)
    return i


@broker.task(name="poison.kill")
async def kill() -> None:
    """Record the start, then end the process at once, as a crash or the OOM killer would."""
    async with _record() as record:
        await record.rpush("poison", os.getpid())
    os._exit(1)

"""A worker app for the tests of limits across processes: every start and end
is recorded in Redis with the process id and the time.

``AQ_BROKER_URL`` names the broker; ``AQ_TEST_RECORD_URL`` the Redis database
where each run appends ``"<start>|<end>|<pid>|<label>"`` to the list ``ledger``
once it ends, and announces its start on the list ``started``.
"""

from __future__ import annotations

import asyncio
import os
import time

from redis.asyncio import Redis

import aq

broker = aq.Broker()
_record: Redis | None = None


def _client() -> Redis:
    global _record
    if _record is None:
        _record = Redis.from_url(os.environ["AQ_TEST_RECORD_URL"])
    return _record


async def _run(label: str, seconds: float) -> None:
    began = time.time()
    await _client().rpush("started", f"{os.getpid()}|{label}")
    await asyncio.sleep(seconds)
    await _client().rpush("ledger", f"{began}|{time.time()}|{os.getpid()}|{label}")


@broker.task(name="limited.paced", global_rate_limit="20/s")
async def paced(i: int) -> None:
    """At most 20 starts a second across the cluster."""
    await _run(str(i), 0)


@broker.task(name="limited.capped", global_max_concurrency=3)
async def capped(label: str, seconds: float) -> None:
    """At most 3 running at once across the cluster."""
    await _run(label, seconds)

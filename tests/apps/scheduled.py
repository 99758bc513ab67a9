"""A scheduler app for the failover tests: a one-second schedule whose every
run is recorded in Redis.

``AQ_BROKER_URL`` names the broker; ``AQ_TEST_RECORD_URL`` the Redis database
where each run appends ``"<due time>|<scheduler that sent it>"`` to the list
``fires`` (and to ``announced``, which the test pops to wait for runs).
"""

from __future__ import annotations

import os

from redis.asyncio import Redis

import aq

broker = aq.Broker()
_record: Redis | None = None


@broker.task(name="scheduled.tick", schedule=aq.every(seconds=1))
async def tick() -> None:
    """Record which due time this run is for, and who sent it."""
    global _record
    if _record is None:
        _record = Redis.from_url(os.environ["AQ_TEST_RECORD_URL"])
    headers = aq.context().headers
    entry = f"{headers['aq-due']}|{headers['aq-scheduler']}"
    await _record.rpush("fires", entry)
    await _record.rpush("announced", entry)

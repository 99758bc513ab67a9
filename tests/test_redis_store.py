"""Where the Redis store keeps things: the key layout other processes (and earlier
versions of aq) rely on."""

from __future__ import annotations

from redis.asyncio import Redis

import aq
import aq.testing
from tests.conftest import REDIS_URL, broker_url


async def test_an_outcome_is_kept_where_earlier_versions_kept_it() -> None:
    broker = aq.Broker(broker_url("redis"), result_ttl=60)
    prefix = broker.url.rpartition("prefix=")[2]

    @broker.task
    async def double(x: int) -> int:
        return x * 2

    raw = Redis.from_url(REDIS_URL)
    try:
        async with broker:
            async with aq.testing.running_worker(broker):
                handle = await double.kiq(21)
                assert await handle.result(timeout=5) == 42
            key = f"{prefix}:result:{{{handle.id}}}"
            assert await raw.get(key) is not None
            assert 0 < await raw.pttl(key) <= 60_000
            assert await broker.get_result(handle.id) == 42
            await broker.transport.delete_namespace()  # type: ignore[attr-defined]
    finally:
        await raw.aclose()

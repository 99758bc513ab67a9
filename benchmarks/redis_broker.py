"""Benchmarks of aq on Redis (see benchmarks/broker_bench.py for the workloads).

Every key a run wrote is deleted at its end.

    python -m benchmarks.redis_broker [--url redis://127.0.0.1:6379/0] [--tasks 20000]
"""

from __future__ import annotations

import asyncio

from aq.transport.redis import RedisTransport
from benchmarks.broker_bench import CLEANUP_TIMEOUT, main


async def delete_keys(url: str) -> None:
    transport = RedisTransport(url)
    async with asyncio.timeout(CLEANUP_TIMEOUT), transport:
        await transport.delete_namespace()


if __name__ == "__main__":
    main("redis", "redis://127.0.0.1:6379/0", delete_keys)

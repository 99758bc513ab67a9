"""saq on Redis: its enqueue rate, drain rate, round-trip latency and 1 s fan-out.

saq's worker runs ``concurrency`` loops, each blocked in BLMOVE on the queue's
list, so every idle concurrency slot holds a Redis connection of its own (and
redis-py 8's pool allows 100 unless told otherwise). A finished job's record,
result included, is kept for the job's ``ttl`` (600 s by default).
``Queue.apply`` waits for a result by polling the job's record every
``poll_interval`` (and sleeps one more interval once it has it); the worker also
PUBLISHes every status change on ``saq:job:<queue>:<job id>``, and pub/sub
channels are server-wide, not per database.
"""

from __future__ import annotations

import asyncio
import os
import sys
from types import TracebackType
from typing import Any

from redis.asyncio import Redis
from saq.queue.redis import RedisQueue

from benchmarks.systems import _mark

BROKER = "redis"
LABEL = "saq"
WORKLOADS = ("drain", "round_trip", "fanout")

URL = os.environ.get("AQBENCH_URL", "redis://127.0.0.1:6379/15")
# Each slot opens its own Redis connection as the worker starts, all at once: past
# about a thousand, the last of them overrun redis-py's 5 s connect timeout on a
# 2-core machine (and 10,000 would pass Redis's default maxclients, 10,000).
CONCURRENCY = 100  # saq's default is 10; every system gets 1,000 where its design allows
FANOUT_CONCURRENCY = 1_000
SPARE_CONNECTIONS = 50  # beyond one a slot: upkeep loops, and jobs finishing
RESULT_POLL_S = 0.001  # Queue.apply(poll_interval=...): saq's default is 0.5
RESULT_TIMEOUT_S = 30.0
SETTINGS = (
    f"concurrency={CONCURRENCY}, {FANOUT_CONCURRENCY:,} for the fan-out (default 10; each "
    "slot holds a Redis connection of its own, opened together at start-up), with a redis-py pool "
    f"of concurrency + {SPARE_CONNECTIONS} (default 100); "
    f"queue.apply(poll_interval={RESULT_POLL_S}) (default 0.5)"
)


async def noop(ctx: dict[str, Any]) -> None:
    _mark.done("noop")


async def sleep(ctx: dict[str, Any]) -> None:
    await asyncio.sleep(1)
    _mark.done("sleep")


def _queue(url: str, concurrency: int = 10) -> RedisQueue:
    """What saq's Queue.from_url(url) makes, with room in the pool for every slot."""
    pool_size = max(100, concurrency + SPARE_CONNECTIONS)
    return RedisQueue(Redis.from_url(url, max_connections=pool_size))


def settings() -> dict[str, Any]:
    return {
        "queue": _queue(URL, CONCURRENCY),
        "functions": [noop, sleep],
        "concurrency": CONCURRENCY,
    }


def fanout_settings() -> dict[str, Any]:
    return {
        "queue": _queue(URL, FANOUT_CONCURRENCY),
        "functions": [noop, sleep],
        "concurrency": FANOUT_CONCURRENCY,
    }


def worker_argv(workload: str) -> list[str]:
    factory = fanout_settings if workload == "fanout" else settings
    # saq logs at WARNING unless given -v.
    return [sys.executable, "-m", "saq", f"{__name__}.{factory.__name__}", "--workers", "1"]


class Client:
    def __init__(self, url: str) -> None:
        self._queue = _queue(url)

    async def __aenter__(self) -> Client:
        await self._queue.connect()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._queue.disconnect()

    async def send(self, kind: str) -> None:
        await self._queue.enqueue(kind)

    async def call(self) -> None:
        await self._queue.apply("noop", timeout=RESULT_TIMEOUT_S, poll_interval=RESULT_POLL_S)

"""streaQ on Redis: its enqueue rate, drain rate, round-trip latency and 1 s fan-out.

streaQ (on coredis) puts tasks on a Redis stream read by a consumer group: the
worker prefetches ``prefetch`` entries (by default as many as ``concurrency``)
beyond those running, in blocking XREADGROUPs. A finished task's result is kept
for the task's ``ttl`` (300 s by default) and PUBLISHed on
``streaq:<queue>:channels:<task id>``, which ``Task.result`` subscribes to before
it looks for a stored result; pub/sub channels are server-wide, not per database.
Leaving that subscription waits out coredis's unsubscription timeout (0.1 s), so
every ``Task.result`` takes at least that long.
"""

from __future__ import annotations

import asyncio
import os
import sys
from types import TracebackType

import coredis
from streaq import Worker
from streaq.task import AsyncRegisteredTask

from benchmarks.systems import _mark

BROKER = "redis"
LABEL = "streaq"
WORKLOADS = ("drain", "round_trip", "fanout")

URL = os.environ.get("AQBENCH_URL", "redis://127.0.0.1:6379/15")
CONCURRENCY = 1_000  # streaQ's default is 16; every system gets aq's default
FANOUT_CONCURRENCY = 10_000
RESULT_TIMEOUT_S = 30
SETTINGS = (
    f"concurrency={CONCURRENCY:,}, {FANOUT_CONCURRENCY:,} for the fan-out (default 16); "
    "coredis optimized mode (streaQ's docs, 'Worker optimization'); "
    "tasks silent=True (default False logs two lines a task)"
)

# streaQ's docs recommend coredis's optimized mode (fewer runtime checks) when
# worker performance matters. (Their other advice, uvloop, is not installed here.)
coredis.Config.optimized = True


async def _noop() -> None:
    _mark.done("noop")


async def _sleep() -> None:
    await asyncio.sleep(1)
    _mark.done("sleep")


Tasks = dict[str, AsyncRegisteredTask[[], None]]


def _build(url: str, concurrency: int = 16) -> tuple[Worker, Tasks]:
    """A streaQ worker with both tasks registered; streaQ's defaults but concurrency."""
    app = Worker(redis_url=url, concurrency=concurrency)
    tasks = {
        "noop": app.task(name="noop", silent=True)(_noop),
        "sleep": app.task(name="sleep", silent=True)(_sleep),
    }
    return app, tasks


worker, _ = _build(URL, CONCURRENCY)
fanout_worker, _ = _build(URL, FANOUT_CONCURRENCY)


def worker_argv(workload: str) -> list[str]:
    name = "fanout_worker" if workload == "fanout" else "worker"
    return [sys.executable, "-m", "streaq", "run", f"{__name__}:{name}"]


class Client:
    def __init__(self, url: str) -> None:
        self._worker, self._tasks = _build(url)

    async def __aenter__(self) -> Client:
        await self._worker.__aenter__()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._worker.__aexit__(et, e, tb)

    async def send(self, kind: str) -> None:
        await self._tasks[kind].enqueue()

    async def call(self) -> None:
        task = await self._tasks["noop"].enqueue()
        await task.result(timeout=RESULT_TIMEOUT_S)

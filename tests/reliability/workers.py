"""Worker processes for the crash tests, running tests/apps/reliable.py, the wait
for their task starts (which that app announces in a Redis list), and the
failure scenarios every transport must survive: a killed worker, a dead broker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

import aq

__all__ = [
    "awaiting_log",
    "kill_a_worker_running",
    "seconds_kiq_waits_while_down",
    "start_worker",
    "wait_for_starts",
]

ROOT = Path(__file__).resolve().parents[2]


async def start_worker(broker_url: str, record_url: str) -> asyncio.subprocess.Process:
    """`aq worker tests.apps.reliable:broker` on ``broker_url``, recording to ``record_url``."""
    env = {k: v for k, v in os.environ.items() if k != "AQ_BROKER_URL"}
    env |= {"AQ_BROKER_URL": broker_url, "AQ_TEST_RECORD_URL": record_url}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aq",
        "worker",
        "tests.apps.reliable:broker",
        "--concurrency",
        "1000",
        "--log-level",
        "WARNING",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def wait_for_starts(record: Redis, count: int, seconds: float = 30) -> None:
    """Return once ``count`` task starts have been announced."""
    seen = 0
    async with asyncio.timeout(seconds):
        while seen < count:  # BLMPOP: woken by each start, no polling
            popped = await record.blmpop(1, 1, "started", direction="LEFT", count=count)
            seen += len(popped[1]) if popped else 0


async def kill_a_worker_running(
    broker_url: str, record_url: str, record: Redis, count: int = 500
) -> tuple[list[int], Counter[int]]:
    """Send ``count`` three-second tasks, SIGKILL the worker once all of them run,
    start another; return the results and how often each task ran.

    Asserts on the way that nothing had finished when the first worker died.
    """
    producer = aq.Broker(broker_url)

    @producer.task(name="reliable.work")  # the producer's view of tests/apps/reliable.py
    async def work(i: int, seconds: float) -> int:
        raise NotImplementedError("runs in the worker process")

    first = await start_worker(broker_url, record_url)
    second: asyncio.subprocess.Process | None = None
    try:
        async with producer:
            handles = [await work.kiq(i, 3.0) for i in range(count)]
            await wait_for_starts(record, count)  # all of them run in the first worker
            first.send_signal(signal.SIGKILL)
            await first.wait()
            assert await record.llen("runs") == 0
            second = await start_worker(broker_url, record_url)
            results = await asyncio.gather(*(h.result(timeout=90) for h in handles))
        runs = Counter(int(x) for x in await record.lrange("runs", 0, -1))
        return list(results), runs
    finally:
        for proc in (first, second):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()


async def seconds_kiq_waits_while_down(url: str, kill: Callable[[], Awaitable[None]]) -> float:
    """Connect on ``url`` (whose publish_timeout is 1 s), ``kill()`` the broker, and
    time the ``kiq()`` that follows until it raises :class:`aq.BrokerUnavailable`."""
    broker = aq.Broker(url)

    @broker.task(name="noop")
    async def noop() -> None:
        return None

    async with broker:
        await noop.kiq()  # connected, and the reply address is open
        await kill()
        started = asyncio.get_running_loop().time()
        with pytest.raises(aq.BrokerUnavailable, match="unreachable for 1 s"):
            await noop.kiq()
        return asyncio.get_running_loop().time() - started


class _Awaited(logging.Handler):
    """Sets ``seen`` when an ``aq`` log line starting with ``prefix`` is emitted."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith(self.prefix):
            self.seen.set()


@contextlib.contextmanager
def awaiting_log(prefix: str) -> Iterator[asyncio.Event]:
    """An event set once this process logs (under ``aq``) a line starting with ``prefix``."""
    handler = _Awaited(prefix)
    logger = logging.getLogger("aq")
    logger.addHandler(handler)
    try:
        yield handler.seen
    finally:
        logger.removeHandler(handler)

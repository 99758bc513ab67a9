"""Cluster-wide limits across worker processes, on Redis: ``global_rate_limit`` and
``global_max_concurrency`` hold over three processes, and a slot held by a
process killed with SIGKILL comes back within the lease time.

The workers run tests/apps/limited.py, which records every run in Redis.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

import aq
from tests.conftest import REDIS_URL, _delete_prefix, broker_url
from tests.contract.test_cluster_limits import most_in_any_window

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
LEASE_TIME = 2.0


@pytest.fixture
async def urls() -> AsyncIterator[tuple[str, str]]:
    """A broker URL and a Redis URL to record runs in, both fresh."""
    url, record = broker_url("redis"), f"{REDIS_URL.rsplit('/', 1)[0]}/3"
    async with Redis.from_url(record) as client:
        await client.delete("started", "ledger")
    try:
        yield url, record
    finally:
        await _delete_prefix(url)


async def start_workers(url: str, record_url: str) -> asyncio.subprocess.Process:
    """``aq worker tests.apps.limited:broker`` with three worker processes."""
    env = {k: v for k, v in os.environ.items() if k != "AQ_BROKER_URL"}
    env |= {"AQ_BROKER_URL": url, "AQ_TEST_RECORD_URL": record_url}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aq",
        "worker",
        "tests.apps.limited:broker",
        "--processes",
        "3",
        "--concurrency",
        "100",
        "--lease-time",
        str(LEASE_TIME),
        "--log-level",
        "WARNING",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
    )


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 20)
        except TimeoutError:
            process.kill()
            await process.wait()


def producer(url: str) -> tuple[aq.Broker, aq.Task[[int], None], aq.Task[[str, float], None]]:
    """A broker with the producer's view of tests/apps/limited.py."""
    broker = aq.Broker(url)

    @broker.task(name="limited.paced")
    async def paced(i: int) -> None:
        raise NotImplementedError("runs in the worker processes")

    @broker.task(name="limited.capped")
    async def capped(label: str, seconds: float) -> None:
        raise NotImplementedError("runs in the worker processes")

    return broker, paced, capped


async def ledger(record: Redis) -> list[tuple[float, float, int, str]]:
    """Every finished run as (start, end, pid, label)."""
    rows = []
    for raw in await record.lrange("ledger", 0, -1):
        start, end, pid, label = str(raw).split("|")
        rows.append((float(start), float(end), int(pid), label))
    return rows


async def live_slots(record_url: str, broker_url: str) -> list[str]:
    """The holders of unexpired slots of ``limited.capped``, read from Redis."""
    prefix = broker_url.rsplit("prefix=", 1)[1]
    async with Redis.from_url(broker_url.split("?")[0], decode_responses=True) as client:
        seconds, micros = await client.time()
        now_ms = seconds * 1000 + micros // 1000
        held = await client.zrangebyscore(f"{prefix}:slots:{{limited.capped}}", now_ms, "+inf")
    return [str(h) for h in held]


async def test_a_global_rate_limit_holds_across_three_processes(
    urls: tuple[str, str],
) -> None:
    url, record_url = urls
    broker, paced, _ = producer(url)
    workers = await start_workers(url, record_url)
    try:
        async with broker, Redis.from_url(record_url, decode_responses=True) as record:
            handles = [await paced.kiq(i) for i in range(260)]
            await asyncio.gather(*(h.result(timeout=60) for h in handles))
            starts = sorted(start for start, *_ in await ledger(record))
    finally:
        await stop(workers)
    assert len(starts) == 260
    first = starts[0]
    steady = [t for t in starts if first + 1 <= t < first + 11]
    assert 180 <= len(steady) <= 220, f"{len(steady) / 10} starts a second, not 20"
    for seconds in (1.0, 5.0, 10.0):  # never more than the burst (20) above the rate
        assert most_in_any_window(starts, seconds) <= 20 * seconds + 20 + 1


async def test_global_max_concurrency_holds_across_three_processes(
    urls: tuple[str, str],
) -> None:
    url, record_url = urls
    broker, _, capped = producer(url)
    workers = await start_workers(url, record_url)
    try:
        async with broker, Redis.from_url(record_url, decode_responses=True) as record:
            handles = [await capped.kiq(str(i), 0.2) for i in range(30)]
            await asyncio.gather(*(h.result(timeout=60) for h in handles))
            runs = await ledger(record)
    finally:
        await stop(workers)
    assert len(runs) == 30
    events = sorted([(start, 1) for start, *_ in runs] + [(end, -1) for _, end, *_ in runs])
    running, most = 0, 0
    for _, change in events:  # an end at the same instant as a start counts first
        running += change
        most = max(most, running)
    assert most == 3
    assert len({pid for _, _, pid, _ in runs}) > 1  # the slots were shared out


async def test_a_slot_held_by_a_killed_process_comes_back_within_the_lease_time(
    urls: tuple[str, str],
) -> None:
    url, record_url = urls
    broker, _, capped = producer(url)
    workers = await start_workers(url, record_url)
    try:
        # No socket timeout: redis-py's own (5 s) would cut the 30-second BLPOPs short.
        record_client = Redis.from_url(record_url, decode_responses=True, socket_timeout=None)
        async with broker, record_client as record:
            for i in range(3):
                await capped.kiq(f"long{i}", 60.0)
            started: list[str] = []
            while len(started) < 3:  # BLPOP: woken by each start
                popped = await record.blpop(["started"], timeout=30)
                assert popped is not None, "the three long runs did not start"
                started.append(str(popped[1]))
            slots = await live_slots(record_url, url)
            assert len(slots) == 3
            victim = int(started[0].split("|")[0])
            os.kill(victim, signal.SIGKILL)
            killed = time.monotonic()
            # Nothing announces that a lease expired: look until one of the three
            # slots is no longer held, within a bound (the other two are renewed).
            while set(await live_slots(record_url, url)) >= set(slots):
                assert time.monotonic() - killed < LEASE_TIME + 1, "the slot stayed taken"
                await asyncio.sleep(0.05)
            # Renewed every third of the lease, it outlived the kill by two thirds at least.
            assert time.monotonic() - killed >= LEASE_TIME * 2 / 3 - 0.1
    finally:
        await stop(workers)

"""Scheduler failover across processes: three ``aq scheduler`` processes with a
one-second schedule, the leader killed (SIGKILL) or paused (SIGSTOP) mid-run;
and a leader cut off from Redis by a silent partition.
A ledger of the runs shows each due time sent at most once, and no gap longer
than the lease time (Redis: a store lease) or than a second (RabbitMQ alone:
its single-active-consumer queue hands over when the leader's connection closes).

The processes run tests/apps/scheduled.py, which records every run in Redis.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

import aq
from aq.testing import running_worker
from tests.conftest import AMQP_URL, REDIS_URL, _delete_prefix, broker_url, delete_amqp_namespace
from tests.contract.test_schedules import Fires
from tests.reliability.rabbit import TcpProxy

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
LEASE_TIME = 2.0


@pytest.fixture
async def record() -> AsyncIterator[Redis]:
    url = f"{REDIS_URL.rsplit('/', 1)[0]}/4"
    # No socket timeout: redis-py's own (5 s) would cut the 30-second BLPOPs short.
    async with Redis.from_url(url, decode_responses=True, socket_timeout=None) as r:
        await r.delete("fires", "announced")
        yield r


@pytest.fixture(params=["redis", "amqp"])
async def url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    if request.param == "redis":
        url = broker_url("redis")
        yield url
        await _delete_prefix(url)
        return
    prefix = f"aqtest-failover-{os.urandom(4).hex()}"
    url = f"{AMQP_URL}?prefix={prefix}"
    yield url
    await delete_amqp_namespace(url)


async def spawn(url: str, record: Redis, *args: str) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if k != "AQ_BROKER_URL"}
    kwargs = record.connection_pool.connection_kwargs
    env |= {
        "AQ_BROKER_URL": url,
        "AQ_TEST_RECORD_URL": f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs['db']}",
    }
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aq",
        *args,
        "tests.apps.scheduled:broker",
        "--log-level",
        "WARNING",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
    )


async def wait_for_runs(record: Redis, count: int) -> list[str]:
    """The next ``count`` runs announced, as "due|scheduler"."""
    runs: list[str] = []
    while len(runs) < count:
        popped = await record.blpop(["announced"], timeout=30)
        assert popped is not None, "the schedule stopped firing"
        runs.append(str(popped[1]))
    return runs


def pid_of(run: str) -> int:
    return int(run.split("|")[1].split(":")[1])


async def stop_all(processes: list[asyncio.subprocess.Process]) -> None:
    for process in processes:
        if process.returncode is None:
            process.send_signal(signal.SIGCONT)
            process.kill()
            await process.wait()


async def ledger(record: Redis) -> list[float]:
    return sorted(float(str(run).split("|")[0]) for run in await record.lrange("fires", 0, -1))


async def run_failover(url: str, record: Redis, how: signal.Signals) -> list[float]:
    worker = await spawn(url, record, "worker", "--concurrency", "10")
    schedulers = [
        await spawn(url, record, "scheduler", "--lease-time", str(LEASE_TIME)) for _ in range(3)
    ]
    try:
        leader = pid_of((await wait_for_runs(record, 3))[-1])
        assert leader in {s.pid for s in schedulers}
        os.kill(leader, how)
        while True:  # until another scheduler has sent three runs
            runs = await wait_for_runs(record, 1)
            if pid_of(runs[0]) != leader:
                break
        await wait_for_runs(record, 2)
        if how == signal.SIGSTOP:  # the old leader wakes, and must not send again
            os.kill(leader, signal.SIGCONT)
            await wait_for_runs(record, 3)
    finally:
        await stop_all([worker, *schedulers])
    return await ledger(record)


def largest_gap(dues: list[float]) -> float:
    return max(b - a for a, b in itertools.pairwise(dues))


async def test_a_killed_leader_is_replaced_and_no_fire_is_sent_twice(
    url: str, record: Redis
) -> None:
    dues = await run_failover(url, record, signal.SIGKILL)
    assert len(dues) == len(set(dues)) >= 6
    assert largest_gap(dues) <= LEASE_TIME + 1


async def test_a_paused_leader_is_replaced_and_sends_nothing_when_it_wakes(
    record: Redis,
) -> None:
    url = broker_url("redis")  # RabbitMQ alone hands over only when heartbeats stop
    try:
        dues = await run_failover(url, record, signal.SIGSTOP)
    finally:
        await _delete_prefix(url)
    assert len(dues) == len(set(dues)) >= 9
    assert largest_gap(dues) <= LEASE_TIME + 1


async def test_a_leader_cut_off_from_redis_steps_down_before_another_leads() -> None:
    url = broker_url("redis")
    link = TcpProxy(int(REDIS_URL.rsplit(":", 1)[1].split("/")[0]))
    await link.start()
    cut_off, direct = aq.Broker(link.url_for(url)), aq.Broker(url)
    fires = Fires()

    async def record() -> None:
        fires.record()

    for broker in (cut_off, direct):
        broker.register(record, name="tick", schedule=aq.every(seconds=0.2))
    first = aq.Scheduler(cut_off, lease_time=LEASE_TIME)
    second = aq.Scheduler(direct, lease_time=LEASE_TIME)
    runs: list[asyncio.Task[None]] = []
    try:
        async with cut_off, direct, running_worker(direct):
            runs.append(asyncio.create_task(first.run()))
            await asyncio.wait_for(first.wait_leading(), 10)
            runs.append(asyncio.create_task(second.run()))
            await fires.wait_for(3)
            loop = asyncio.get_running_loop()
            await link.partition()  # no byte passes on any connection, old or new
            frozen = loop.time()
            await asyncio.wait_for(second.wait_leading(), LEASE_TIME * 3)
            took_over = loop.time() - frozen
            assert not first.leading  # it stepped down by its own clock
            await fires.wait_for(len(fires.runs) + 3)
    finally:
        for run in runs:
            run.cancel()
        await asyncio.gather(*runs, return_exceptions=True)
        await link.close()
        await _delete_prefix(url)
    assert took_over <= LEASE_TIME + 0.5
    dues = [due for _, due in fires.runs]
    assert len(dues) == len(set(dues))

"""A chord's body runs exactly once, with every member's result, when workers die.

2,000 members start in a first worker, which is killed with SIGKILL while they
run. A second worker runs them again, and completes the chord: it sends the
body and is killed at once (tests/apps/chords.py), before it records that the
body went and before it acks the member that completed the chord. A third
worker is given that member again, sends the body again, and the body runs
once all the same: on Redis, and on RabbitMQ with a Redis store. (The body has
a queue of its own, which only the third worker consumes: a body run by a
worker that is then killed runs again, as any task would.)
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

import aq
from tests.conftest import REDIS_URL, broker_url, delete_amqp_namespace
from tests.reliability.workers import wait_for_starts

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
MEMBERS = 2000
RECORD_URL = f"{REDIS_URL.rsplit('/', 1)[0]}/4"


@pytest.fixture(params=["redis", "amqp"])
async def url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    async with Redis.from_url(RECORD_URL) as record:
        await record.delete("started", "bodies", "died")
    if request.param == "redis":
        yield f"{broker_url('redis')}&visibility_timeout=2"
    else:
        url = broker_url("amqp")
        await delete_amqp_namespace(url, ("default", "bodies"))
        yield url
        await delete_amqp_namespace(url, ("default", "bodies"))


async def start_worker(
    url: str, store_url: str, *flags: str, queues: str = "default"
) -> asyncio.subprocess.Process:
    """``aq worker tests.apps.chords:broker`` on ``queues``, itself the worker (no
    supervisor to restart it), with the app's test flags (``AQ_TEST_...``) set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AQ_")}
    env |= {
        "AQ_BROKER_URL": url,
        "AQ_TEST_STORE_URL": store_url,
        "AQ_TEST_RECORD_URL": RECORD_URL,
    }
    env |= dict.fromkeys(flags, "1")
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aq",
        "worker",
        "tests.apps.chords:broker",
        "--no-supervise",
        "--queues",
        queues,
        "--concurrency",
        str(MEMBERS),
        "--log-level",
        "ERROR",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
    )


async def test_a_chord_body_runs_once_when_its_workers_are_killed(url: str) -> None:
    store_url = broker_url("redis")
    producer = aq.Broker(url, store=store_url)

    @producer.task(name="chords.member")  # the producer's view of tests/apps/chords.py
    async def member(i: int, seconds: float) -> int:
        raise NotImplementedError("runs in the worker")

    @producer.task(name="chords.body", queue="bodies")
    async def body(results: list[int]) -> int:
        raise NotImplementedError("runs in the worker")

    workers: list[asyncio.subprocess.Process] = []
    record = Redis.from_url(RECORD_URL)
    try:
        async with producer:
            workers.append(await start_worker(url, store_url, "AQ_TEST_SLOW_MEMBERS"))
            members = [member.s(i, 30.0) for i in range(MEMBERS)]
            handle = await aq.chord(members, body.s()).kiq()
            await wait_for_starts(record, MEMBERS)  # every member runs in the first worker
            workers[0].send_signal(signal.SIGKILL)
            await workers[0].wait()
            workers.append(await start_worker(url, store_url, "AQ_TEST_DIE_IN_FINISH_JOIN"))
            assert await workers[1].wait() == -signal.SIGKILL
            assert await record.get("died") == b"1"  # it died completing the chord
            workers.append(await start_worker(url, store_url, queues="default,bodies"))
            assert await handle.result(timeout=60) == sum(range(MEMBERS))
            await drained(producer, "default")
            await drained(producer, "bodies")  # the body's second copy was taken, and dropped
        runs = await record.lrange("bodies", 0, -1)
        assert runs == [f"{MEMBERS}:{sum(range(MEMBERS))}".encode()]
    finally:
        await record.aclose()
        for worker in workers:
            if worker.returncode is None:
                worker.send_signal(signal.SIGTERM)
                await worker.wait()


async def drained(broker: aq.Broker, queue: str) -> None:
    """Return once ``queue`` holds no message, queued or taken (across processes
    there is no event to await: this asks the broker every 50 ms)."""
    async with asyncio.timeout(30):
        while True:
            stats = await broker.admin.stats(queue)
            if not (stats.ready or stats.delayed or stats.unacked or stats.isolated):
                return
            await asyncio.sleep(0.05)

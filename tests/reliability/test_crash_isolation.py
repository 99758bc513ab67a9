"""A task that kills its worker process is isolated and dead-lettered alone.

Each test runs ``aq worker tests.apps.poison:broker`` with its defaults (a
supervisor, one worker process and the isolation worker) against a real
broker, sends dozens of good tasks and then one that calls ``os._exit(1)``
while the worker holds them, and checks: only the poison is dead-lettered,
after exactly ``max_deliveries`` runs, with a reason that says why; every good
task succeeds, none dead-lettered; and tasks sent meanwhile keep being served.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

import aq
from tests.conftest import AMQP_URL, REDIS_URL

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
GOOD = 20


@pytest.fixture
async def record() -> AsyncIterator[tuple[str, Redis]]:
    """A Redis database where tests/apps/poison.py records every start."""
    url = REDIS_URL.rsplit("/", 1)[0] + "/12"
    client = Redis.from_url(url)
    await client.delete("good", "poison")
    try:
        yield url, client
    finally:
        await client.delete("good", "poison")
        await client.aclose()


@pytest.fixture(params=["redis", "amqp-classic", "amqp-quorum"])
async def broker_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A fresh namespace on the shared server, with max_deliveries=3; deleted afterwards."""
    prefix = f"aqcrash-{uuid.uuid4().hex[:12]}"
    if request.param == "redis":
        url = f"{REDIS_URL}?prefix={prefix}&max_deliveries=3&visibility_timeout=2"
    else:
        kind = request.param.removeprefix("amqp-")
        url = f"{AMQP_URL}?prefix={prefix}&max_deliveries=3&queue_type={kind}"
    yield url
    transport: Any = aq.Broker(url).transport
    async with transport:
        if request.param == "redis":
            await transport.delete_namespace()
        else:
            transport.declarer.declared.update(["default"])
            await transport.delete_namespace()


async def _start_worker(broker_url: str, record_url: str, log: Path) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if k != "AQ_BROKER_URL"}
    env |= {"AQ_BROKER_URL": broker_url, "AQ_TEST_RECORD_URL": record_url}
    with log.open("ab") as output:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "aq",
            "worker",
            "tests.apps.poison:broker",
            "--shutdown-timeout",
            "2",
            cwd=ROOT,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=output,
        )


@pytest.mark.timeout(150)
async def test_only_the_task_that_kills_its_worker_is_dead_lettered_and_work_goes_on(
    broker_url: str, record: tuple[str, Redis], tmp_path: Path
) -> None:
    record_url, runs = record
    producer = aq.Broker(broker_url)

    @producer.task(name="poison.good")
    async def good(i: int, seconds: float) -> int:
        raise NotImplementedError("runs in the worker")

    @producer.task(name="poison.kill")
    async def kill() -> None:
        raise NotImplementedError("runs in the worker")

    log = tmp_path / "worker.log"
    worker = await _start_worker(broker_url, record_url, log)
    try:
        async with producer:
            held = [await good.kiq(i, 0.2) for i in range(GOOD)]
            poison = await kill.kiq()
            # Sent while the poison kills workers: served all the same.
            later = [await good.kiq(i, 0.01) for i in range(GOOD, 2 * GOOD)]
            results = await asyncio.gather(*(h.result(timeout=120) for h in held + later))
            with pytest.raises(aq.WorkerCrashed) as crashed:
                await poison.result(timeout=120)
            # A graceful stop waits for every settlement, the dead letter's included.
            worker.terminate()
            assert await worker.wait() == 0
            letters = await producer.admin.dead_letters("default")
            stats = await producer.admin.stats("default")
        poison_runs = await runs.llen("poison")
        good_runs = Counter(int(i) for i in await runs.lrange("good", 0, -1))
    except BaseException:
        print(log.read_text(errors="replace")[-20000:])
        raise
    finally:
        if worker.returncode is None:
            worker.terminate()
            await worker.wait()
    assert sorted(results) == list(range(2 * GOOD))
    assert set(good_runs) == set(range(2 * GOOD))
    assert poison_runs == 3  # max_deliveries, not one more
    [letter] = letters  # the poison alone
    assert letter.reason == (
        "crashed its worker process 3 times, the last 1 while running alone: this task is the cause"
    )
    assert crashed.value.remote_message == letter.reason
    assert (stats.ready, stats.unacked, stats.isolated, stats.dead) == (0, 0, 0, 1)

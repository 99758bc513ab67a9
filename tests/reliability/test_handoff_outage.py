"""A broker outage while a worker hands off an outcome: an expected event, not an
internal error. The worker keeps the outcome until the broker is back, within
its hand-off timeout, and says so; past the bound, it says the task runs again.

Each test runs a private server it kills and restarts.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

import aq
from tests.reliability.conftest import RedisServer
from tests.reliability.rabbit import RabbitServer
from tests.reliability.workers import awaiting_log

pytestmark = pytest.mark.slow


def _waiting_task(
    broker: aq.Broker,
) -> tuple[aq.Task[[], int], asyncio.Event, asyncio.Event, list[int]]:
    started, release, runs = asyncio.Event(), asyncio.Event(), []

    @broker.task(name="work")
    async def work() -> int:
        runs.append(1)
        started.set()
        await release.wait()
        return 7

    return work, started, release, runs


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("aq")]


async def _finish_during_an_outage(
    broker: aq.Broker, server: RedisServer | RabbitServer, handoff_timeout: float, wait_for: str
) -> tuple[int, list[int]]:
    """Run a task, kill ``server`` while it runs, let it finish during the outage, wait
    for the log line ``wait_for``, start the server again; the result and the runs."""
    work, started, release, runs = _waiting_task(broker)
    async with broker, aq.Worker(broker, handoff_timeout=handoff_timeout):
        handle = await work.kiq()
        await started.wait()
        await server.kill()
        with awaiting_log(wait_for) as logged:
            release.set()
            await logged.wait()
        await server.start()
        return await handle.result(timeout=60), runs


@pytest.mark.timeout(60)
async def test_an_outcome_is_kept_through_a_redis_outage_and_the_task_runs_once(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aq")
    broker = aq.Broker(f"{redis_server.url}?publish_timeout=1")
    result, runs = await _finish_during_an_outage(
        broker, redis_server, 60, "worker.handoff_waiting"
    )
    assert result == 7
    assert runs == [1]  # kept, not run again
    lines = _lines(caplog)
    assert any(line.startswith("worker.handoff_resumed task_id=") for line in lines)
    assert not any("internal error" in line for line in lines)
    assert not [r for r in caplog.records if r.name == "aq.worker" and r.exc_info]


@pytest.mark.timeout(60)
async def test_an_outcome_given_up_after_the_bound_says_the_task_runs_again_and_it_does(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aq")
    broker = aq.Broker(f"{redis_server.url}?publish_timeout=0.5&visibility_timeout=2")
    result, runs = await _finish_during_an_outage(
        broker, redis_server, 1, "worker.handoff_abandoned"
    )
    assert result == 7  # from its second run
    assert runs == [1, 1]
    [line] = [x for x in _lines(caplog) if x.startswith("worker.handoff_abandoned")]
    assert "the task will run again" in line


@pytest.mark.timeout(90)
async def test_a_reply_during_a_rabbitmq_outage_is_sent_once_it_is_back(
    rabbit_server: RabbitServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aq")
    broker = aq.Broker(f"{rabbit_server.url}?publish_timeout=1")
    result, runs = await _finish_during_an_outage(
        broker, rabbit_server, 60, "worker.handoff_waiting"
    )
    assert result == 7
    # The lost connection returned the message, so RabbitMQ may deliver it again.
    assert len(runs) <= 2
    lines = _lines(caplog)
    assert any(line.startswith("worker.handoff_resumed task_id=") for line in lines)
    assert not any("internal error" in line for line in lines)

"""Long tasks and RabbitMQ's consumer_timeout, on a private node with a short one.

RabbitMQ closes the channel of a consumer that holds a delivery longer than its
``consumer_timeout`` and redelivers what it held, so a task that outlives it
runs again, and again. The node here has a 2-second consumer_timeout, checked
every second (``channel_tick_interval``; RabbitMQ's default is a minute).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import aq
from aq.testing import running_worker
from tests.reliability.rabbit import RabbitServer

pytestmark = pytest.mark.slow


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[RabbitServer]:
    directory = tmp_path / "rabbitmq"
    directory.mkdir()
    (directory / "advanced.config").write_text("[{rabbit, [{channel_tick_interval, 1000}]}].\n")
    server = RabbitServer(directory, extra_config="consumer_timeout = 2000")
    await server.start()
    try:
        yield server
    finally:
        await server.kill()


@pytest.mark.timeout(60)
async def test_a_worker_refuses_a_task_whose_timeout_outlasts_the_consumer_timeout(
    node: RabbitServer,
) -> None:
    broker = aq.Broker(f"{node.url}?consumer_timeout=2")

    @broker.task(name="report", timeout=5)
    async def report() -> None: ...

    with pytest.raises(aq.ConfigurationError) as refused:
        await aq.Worker(broker).start()
    message = str(refused.value)
    assert message.startswith("task report has timeout=5 s, longer than the 2 s RabbitMQ lets")
    assert "raise consumer_timeout in rabbitmq.conf" in message
    assert "?consumer_timeout=" in message


@pytest.mark.timeout(60)
async def test_rabbitmq_runs_a_task_outliving_its_consumer_timeout_again_and_aq_says_so(
    node: RabbitServer, caplog: pytest.LogCaptureFixture
) -> None:
    # What the refusal above prevents: without a timeout, the task is only warned of.
    broker = aq.Broker(f"{node.url}?consumer_timeout=2")
    starts: list[int] = []
    second = asyncio.Event()

    @broker.task(name="slow")
    async def slow() -> None:
        starts.append(1)
        if len(starts) == 2:
            second.set()
        await asyncio.sleep(5)

    caplog.set_level(logging.WARNING, logger="aq")
    async with broker, running_worker(broker, shutdown_timeout=0):
        await slow.kiq()
        async with asyncio.timeout(30):
            await second.wait()  # taken back while it ran, and delivered again
    events = [r.getMessage() for r in caplog.records if r.name.startswith("aq.")]
    assert any(e.startswith("worker.no_timeout tasks=slow limit=2") for e in events), events
    assert any(e.startswith("amqp.consumer_timeout held=1 limit=2") for e in events), events

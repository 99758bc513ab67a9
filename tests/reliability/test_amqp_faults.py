"""Faults an operator meets on RabbitMQ, injected with the raw client or a private
node: queues deleted under running consumers, and what the worker does about
each. In every case the worker keeps working and says what happened.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest

import aq
from aq.testing import running_worker
from aq.transport.amqp import consumer as amqp_consumer
from tests.conftest import AMQP_URL
from tests.reliability.workers import awaiting_log

pytestmark = pytest.mark.slow


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A fresh name prefix on the shared server; its queues are deleted afterwards."""
    name = f"aqfault-{uuid.uuid4().hex[:12]}"
    yield name
    transport: Any = aq.Broker(f"{AMQP_URL}?prefix={name}").transport
    async with transport:
        transport.declarer.declared.update(["default"])
        await transport.delete_namespace()


async def _delete_queue(name: str) -> None:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(name)


def _echo_brokers(url: str) -> tuple[aq.Broker, aq.Broker, Any]:
    """A worker's broker and a producer's on ``url``, both knowing the task ``echo``."""
    worker_side, producer = aq.Broker(url), aq.Broker(url)
    for broker in (worker_side, producer):

        @broker.task(name="echo")
        async def echo(i: int) -> int:
            return i

    return worker_side, producer, producer.tasks["echo"]


def _ours(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    """The transport's own log lines at ``level``."""
    return [r.getMessage() for r in caplog.records if r.name == "aq.amqp" and r.levelno == level]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
async def test_a_work_queue_deleted_under_a_worker_is_declared_and_consumed_again(
    prefix: str, queue_type: str, caplog: pytest.LogCaptureFixture
) -> None:
    worker_side, producer, echo = _echo_brokers(
        f"{AMQP_URL}?prefix={prefix}&queue_type={queue_type}"
    )
    caplog.set_level(logging.INFO, logger="aq")
    async with worker_side, producer, running_worker(worker_side):
        assert await (await echo.kiq(1)).result(timeout=10) == 1
        with awaiting_log("amqp.consumer_resumed") as resumed:
            await _delete_queue(f"{prefix}.default")  # RabbitMQ sends basic.cancel
            await resumed.wait()
        # Sent once the queue is back: run by the same worker, never restarted.
        assert await (await echo.kiq(2)).result(timeout=20) == 2
        assert await (await echo.kiq(3)).result(timeout=20) == 3
    [warning] = _ours(caplog, logging.WARNING)
    assert warning.startswith(f"amqp.consumer_cancelled queue={prefix}.default")


@pytest.mark.timeout(60)
async def test_a_consumer_that_rabbitmq_stops_feeding_without_a_word_is_started_again(
    prefix: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(amqp_consumer, "WATCH_INTERVAL", 0.2)
    worker_side, producer, echo = _echo_brokers(f"{AMQP_URL}?prefix={prefix}")
    caplog.set_level(logging.INFO, logger="aq")
    async with worker_side, producer, running_worker(worker_side) as worker:
        assert await (await echo.kiq(1)).result(timeout=10) == 1
        # Cancel the consumer behind aq's back: RabbitMQ stops delivering, and
        # nothing tells the worker (as when a quorum queue is deleted and at once
        # declared again by someone else: RabbitMQ 3.10 sends no basic.cancel).
        consumers: Any = worker._consumer._consumers  # type: ignore[union-attr]
        [(channel, tag)] = consumers._tags.values()
        channel.on_consumer_cancel_callbacks.clear()
        await channel.basic_cancel(tag)
        assert await (await echo.kiq(2)).result(timeout=20) == 2
    [warning] = _ours(caplog, logging.WARNING)
    assert warning.startswith("amqp.consumer_stalled queue=default ready=1 consumers=0")


@pytest.mark.timeout(60)
async def test_a_deleted_reply_queue_is_declared_again_and_results_still_arrive(
    prefix: str,
) -> None:
    broker = aq.Broker(f"{AMQP_URL}?prefix={prefix}")

    @broker.task(name="echo")
    async def echo(i: int) -> int:
        return i

    async with broker, running_worker(broker):
        assert await (await echo.kiq(1)).result(timeout=10) == 1
        address = await broker.reply_address()
        await _delete_queue(f"{prefix}.reply.{address}")
        assert await (await echo.kiq(2)).result(timeout=20) == 2

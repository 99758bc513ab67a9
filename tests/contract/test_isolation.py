"""Isolation: a message whose workers died while it ran is moved, counted and run alone."""

from __future__ import annotations

import asyncio

import pytest

import aq
from aq.testing import running_worker
from aq.worker.options import CrashMode


async def _delivered_twice_unsettled(broker: aq.Broker, body: bytes) -> None:
    """Publish ``body`` and requeue it twice, as if two workers had died holding it."""
    transport = broker.transport
    await transport.publish("default", body)
    consumer = await transport.consume(["default"], 1)
    try:
        for _ in range(2):
            await (await consumer.get()).requeue()
    finally:
        await consumer.close()


async def test_an_isolated_message_waits_in_the_isolation_queue_and_comes_out_fresh(
    broker: aq.Broker,
) -> None:
    transport = broker.transport
    await transport.publish("default", b"{}")
    consumer = await transport.consume(["default"], 1)
    try:
        await (await consumer.get()).isolate()
    finally:
        await consumer.close()
    moved = await transport.admin.stats("default")
    isolation = await transport.consume(["default"], 1, isolated=True)
    try:
        delivery = await isolation.get()
        count = delivery.delivery_count
        await delivery.dead_letter("crashed")
    finally:
        await isolation.close()
    after = await transport.admin.stats("default")
    [letter] = await transport.admin.dead_letters("default")
    assert (moved.ready, moved.isolated) == (0, 1)
    assert (delivery.body, count) == (b"{}", 1)
    assert (letter.body, letter.reason) == (b"{}", "crashed")  # into the queue it came from
    assert (after.ready, after.isolated, after.dead) == (0, 0, 1)


async def test_a_message_returned_on_shutdown_is_not_counted_as_a_delivery(
    broker: aq.Broker,
) -> None:
    transport = broker.transport
    await transport.publish("default", b"{}")
    counts = []
    for _ in range(3):
        consumer = await transport.consume(["default"], 1)
        try:
            counts.append((await consumer.get()).delivery_count)
        finally:
            await consumer.close()  # returns what it holds
    assert counts == [1, 1, 1]


async def test_a_requeued_message_counts_each_delivery(broker: aq.Broker) -> None:
    transport = broker.transport
    await transport.publish("default", b"{}")
    consumer = await transport.consume(["default"], 1)
    try:
        counts = []
        for _ in range(3):
            delivery = await consumer.get()
            counts.append(delivery.delivery_count)
            await delivery.requeue()
        await (await consumer.get()).ack()
    finally:
        await consumer.close()
    assert counts == [1, 2, 3]


async def test_a_worker_that_isolates_moves_a_twice_died_task_and_the_isolation_worker_runs_it(
    broker: aq.Broker,
) -> None:
    ran: list[int] = []

    @broker.task(name="work")
    async def work(i: int) -> int:
        ran.append(i)
        return i

    message = aq.TaskMessage("t-1", "work", "default", args=[7])
    await _delivered_twice_unsettled(broker, broker.encode(message))
    async with running_worker(broker, crashes="isolate") as worker:
        handle = await work.kiq(1)  # a fresh task beside it runs here at once
        assert await handle.result(timeout=10) == 1
        await worker.wait_idle()
    assert ran == [1]
    assert (await broker.admin.stats("default")).isolated == 1
    async with running_worker(broker, crashes="isolated") as isolation:
        assert isolation.concurrency == 1
        await isolation.wait_idle()
    assert ran == [1, 7]
    stats = await broker.admin.stats("default")
    assert (stats.ready, stats.isolated, stats.dead) == (0, 0, 0)


@pytest.mark.parametrize(
    ("crashes", "reason"),
    [
        (
            "isolated",
            "crashed its worker process 3 times, the last 1 while running alone: "
            "this task is the cause",
        ),
        ("inline", "delivered 3 times without being settled (its workers keep dying)"),
    ],
)
async def test_a_task_that_keeps_killing_its_workers_is_dead_lettered_unrun_with_the_reason(
    broker: aq.Broker, crashes: CrashMode, reason: str
) -> None:
    ran: list[int] = []

    @broker.task(name="work")
    async def work(i: int) -> int:
        ran.append(i)
        return i

    transport = broker.transport
    transport.max_deliveries = 2 if crashes == "inline" else 3
    body = broker.encode(aq.TaskMessage("t-2", "work", "default", args=[7]))
    if crashes == "isolated":  # isolated once, then its isolation worker died holding it
        await transport.publish("default", body)
        main = await transport.consume(["default"], 1)
        await (await main.get()).isolate()
        await main.close()
        consumer = await transport.consume(["default"], 1, isolated=True)
        await (await consumer.get()).requeue()
        await consumer.close()
    else:
        await _delivered_twice_unsettled(broker, body)
    async with running_worker(broker, crashes=crashes) as worker:
        await worker.wait_idle()
    [letter] = await transport.admin.dead_letters("default")
    assert ran == []
    assert letter.reason == reason


async def test_an_isolation_consumer_of_several_queues_holds_one_message_at_a_time(
    broker: aq.Broker,
) -> None:
    transport = broker.transport
    for queue in ("alpha", "beta"):
        await transport.publish(queue, queue.encode())
        main = await transport.consume([queue], 1)
        await (await main.get()).isolate()
        await main.close()
    first = await transport.consume(["alpha", "beta"], 1, isolated=True)
    second = await transport.consume(["alpha", "beta"], 1, isolated=True)
    try:
        held = await first.get()
        # A crash now would be blamed on every message the process holds: the other
        # one must be free for someone else.
        async with asyncio.timeout(10):
            other = await second.get()
        assert {held.body, other.body} == {b"alpha", b"beta"}
        assert (held.delivery_count, other.delivery_count) == (1, 1)
        await held.ack()
        await other.ack()
    finally:
        await first.close()
        await second.close()

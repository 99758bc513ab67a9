"""What only the RabbitMQ transport does: the delay ladder, quorum queues,
re-declaring deleted queues, refusing what RabbitMQ cannot do. Against the
shared server `make test` starts, under a fresh prefix per test."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import orjson
import pytest

import aq
from aq.testing import running_worker
from aq.transport.amqp.consumer import ETA
from aq.transport.amqp.topology import LEVELS, MAX_DELAY_MS, Names, delay_route
from tests.conftest import AMQP_URL


@pytest.fixture(params=["classic", "quorum"])
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[aq.Broker]:
    b = aq.Broker(f"{AMQP_URL}?prefix=aqt-{uuid.uuid4().hex[:12]}", queue_type=request.param)
    async with b:
        try:
            yield b
        finally:
            await b.transport.delete_namespace()  # type: ignore[attr-defined]


def test_a_delay_is_routed_through_one_level_per_set_bit() -> None:
    names = Names("aq")
    exchange, key = delay_route(names, "aq.default", 0b1010_0001)
    words = key.split(".")
    assert exchange == "aq.delay.07"  # entered at the highest set bit
    assert words[LEVELS:] == ["aq", "default"]
    bits = "".join(words[:LEVELS])
    assert int(bits, 2) == 0b1010_0001


def test_delays_past_the_ladder_are_cut_to_its_longest() -> None:
    exchange, key = delay_route(Names("aq"), "aq.q", MAX_DELAY_MS * 3)
    assert exchange == f"aq.delay.{LEVELS - 1}"
    assert key.split(".")[:LEVELS] == ["1"] * LEVELS


@pytest.mark.parametrize("name", ["", "a*b", "x.dead", "x.delay.07", "reply.x", "control.y", "q#"])
def test_queue_names_that_would_clash_or_act_as_wildcards_are_refused(name: str) -> None:
    with pytest.raises(aq.ConfigurationError, match="cannot be used with RabbitMQ"):
        Names("aq").queue(name)


async def test_tasks_with_one_delay_run_in_the_order_they_were_sent(broker: aq.Broker) -> None:
    order: list[int] = []

    @broker.task
    async def record(i: int) -> None:
        order.append(i)

    sent = time.time()
    handles = [await record.options(delay=0.3).kiq(i) for i in range(30)]
    async with running_worker(broker, concurrency=1):
        await asyncio.gather(*(h.result(timeout=10) for h in handles))
    assert order == list(range(30))
    assert time.time() - sent >= 0.3


async def test_tasks_with_different_delays_run_in_due_order(broker: aq.Broker) -> None:
    order: list[float] = []

    @broker.task
    async def record(delay: float) -> None:
        order.append(delay)

    delays = [0.9, 0.1, 0.5, 0.3, 0.7]
    handles = [await record.options(delay=d).kiq(d) for d in delays]
    async with running_worker(broker, concurrency=1):
        await asyncio.gather(*(h.result(timeout=10) for h in handles))
    assert order == sorted(delays)


async def test_a_message_that_arrives_before_its_eta_is_delayed_again(broker: aq.Broker) -> None:
    @broker.task(name="stamp")
    async def stamp() -> float:
        return time.time()

    transport: Any = broker.transport
    names = await transport.declarer.delays("default")
    eta = time.time() + 0.4
    handle_id = aq.message.new_id()
    waiter = broker._listener.register(handle_id)
    body = orjson.dumps(
        {
            "v": 1,
            "id": handle_id,
            "task": "stamp",
            "queue": "default",
            "reply_to": await broker.reply_address(),
            "correlation_id": handle_id,
        }
    )
    # As if the ladder had been too short: straight into the work queue, due later.
    await transport.context.publish_raw(
        "", names.work, body, headers={ETA: math.ceil(eta * 1000)}, what="test"
    )
    async with running_worker(broker):
        status, ran_at = await asyncio.wait_for(waiter.outcome, 10)
    assert status == "result"
    assert ran_at >= eta


async def test_a_queue_deleted_behind_the_producers_back_is_declared_again(
    broker: aq.Broker,
) -> None:
    @broker.task
    async def add(x: int, y: int) -> int:
        return x + y

    await add.kiq(1, 1)  # declares the queue
    transport: Any = broker.transport
    async with transport.context.raw_channel() as channel:
        await channel.queue_delete(transport.names.queue("default").work)
    handle = await add.kiq(2, 2)  # returned as unroutable, declared again, sent again
    async with running_worker(broker):
        assert await handle.result(timeout=10) == 4


async def test_an_unroutable_message_is_an_error_not_a_silent_drop(broker: aq.Broker) -> None:
    transport: Any = broker.transport
    with pytest.raises(aq.BrokerError, match="no queue to route"):
        await transport.context.publish_raw("", "aqt-nobody-listens-here", b"{}", what="publish")


async def test_priorities_are_refused_on_quorum_queues_and_kept_on_classic(
    broker: aq.Broker,
) -> None:
    @broker.task
    async def noop() -> None:
        return None

    if broker.transport.settings.queue_type == "quorum":  # type: ignore[attr-defined]
        with pytest.raises(aq.ConfigurationError, match="quorum queues have no priorities"):
            await noop.options(priority=5).kiq()
    else:
        await noop.options(priority=5).kiq()
        assert (await broker.admin.stats("default")).ready == 1


async def test_retries_dead_letters_and_requeue_work_on_both_queue_types(
    broker: aq.Broker,
) -> None:
    attempts: list[int] = []

    @broker.task(retries=2, retry_backoff=0.01)
    async def failing() -> None:
        attempts.append(aq.context().attempt)
        raise ValueError("still broken")

    async with running_worker(broker):
        with pytest.raises(aq.TaskFailed, match="still broken"):
            await (await failing.kiq()).result(timeout=10)
    [letter] = await broker.admin.dead_letters("default")
    assert letter.reason == "failed after 3 attempt(s): ValueError: still broken"
    assert attempts == [1, 2, 3]
    assert await broker.admin.requeue_dead("default") == 1
    stats = await broker.admin.stats("default")
    assert (stats.ready, stats.dead) == (1, 0)


async def test_delay_exchanges_deleted_behind_the_producers_back_are_declared_again(
    broker: aq.Broker,
) -> None:
    @broker.task
    async def add(x: int, y: int) -> int:
        return x + y

    await add.options(delay=0.05).kiq(1, 1)  # declares the delay ladder
    transport: Any = broker.transport
    async with transport.context.raw_channel() as channel:
        for level in range(-1, LEVELS):
            await channel.exchange_delete(transport.names.delay_exchange(level))
    handle = await add.options(delay=0.05).kiq(2, 2)  # refused, declared again, sent again
    async with running_worker(broker):
        assert await handle.result(timeout=10) == 4


async def test_a_quorum_queue_dead_letters_what_keeps_coming_back_saying_why() -> None:
    url = f"{AMQP_URL}?prefix=aqt-{uuid.uuid4().hex[:12]}&max_deliveries=2"
    broker = aq.Broker(url, queue_type="quorum")
    async with broker:
        transport: Any = broker.transport
        try:
            await transport.publish("default", b"{}")
            names = transport.names.queue("default")
            raw = await aio_pika.connect(AMQP_URL)
            async with raw:
                channel = await raw.channel()
                work = await channel.declare_queue(names.work, passive=True)
                returned = 0
                async with work.iterator() as messages:
                    async for message in messages:  # as if three workers died holding it
                        await message.nack(requeue=True)
                        returned += 1
                        if returned == 3:
                            break
                # RabbitMQ moves it on its own: wait for it on the dead-letter queue.
                dead = names.dead
                queue = await channel.declare_queue(dead, passive=True)
                async with queue.iterator() as messages:
                    async for message in messages:
                        await message.nack(requeue=True)
                        break
                await channel.declare_queue(dead, passive=True)  # the nack has been applied
            [letter] = await transport.admin.dead_letters("default")
        finally:
            await transport.delete_namespace()
    assert letter.reason.startswith("delivered too many times without being settled")
    assert letter.body == b"{}"


async def test_a_cancelled_caller_does_not_cancel_the_acks_of_its_turn_for_the_others(
    broker: aq.Broker,
) -> None:
    transport = broker.transport
    for body in (b"a", b"b"):
        await transport.publish("default", body)
    consumer = await transport.consume(["default"], 10)
    try:
        first, second = await consumer.get(), await consumer.get()
        acks = [asyncio.create_task(d.ack()) for d in (first, second)]
        await asyncio.sleep(0)  # both acks are asked for in one turn
        acks[0].cancel()
        await acks[1]  # still settles, though it shares the turn's frames
    finally:
        await consumer.close()  # returns nothing: both acks went out
    stats = await transport.admin.stats("default")
    assert (stats.ready, stats.unacked) == (0, 0)


async def test_an_abandoned_delivery_on_a_live_channel_is_handed_back_at_once(
    broker: aq.Broker,
) -> None:
    # As when a separate result backend stayed down past the hand-off timeout.
    transport = broker.transport
    await transport.publish("default", b"again")
    consumer = await transport.consume(["default"], 1)
    try:
        (await consumer.get()).abandon()
        async with asyncio.timeout(10):
            again = await consumer.get()
        assert again.body == b"again"
        assert again.delivery_count == 2  # an unsettled delivery counts
        await again.ack()
    finally:
        await consumer.close()

"""Faults an operator meets on Redis, injected with the raw client: deleted
streams and groups, junk in a delayed set, producers that die. In each, the
worker keeps working and says what happened, and nothing outlives its bound.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

import aq
from aq.testing import running_worker
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.slow


@pytest.fixture
async def url() -> AsyncIterator[str]:
    """A fresh prefix on the shared Redis, deleted afterwards."""
    prefix = f"aqfault-{uuid.uuid4().hex[:12]}"
    yield f"{REDIS_URL}?prefix={prefix}"
    raw = Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in raw.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await raw.delete(*keys)
    finally:
        await raw.aclose()


@pytest.fixture
async def raw() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    try:
        yield client
    finally:
        await client.aclose()


def _echo_broker(url: str) -> tuple[aq.Broker, aq.Task[[int], int]]:
    broker = aq.Broker(url)

    @broker.task(name="echo")
    async def echo(i: int) -> int:
        return i

    return broker, echo


async def test_a_dead_producers_reply_stream_expires_with_its_liveness_key(
    url: str, raw: Redis
) -> None:
    broker, echo = _echo_broker(url)  # reply_ttl 300 s

    async with broker, running_worker(broker):
        transport: Any = broker.transport
        address = await broker.reply_address()
        stream, alive = transport.context.keys.inbox(address)
        # As if the producer stopped refreshing a while ago: 2 s of life left.
        await raw.pexpire(alive, 2000)
        assert await (await echo.kiq(1)).result(timeout=10) == 1  # the reply-and-ack script
        after_reply_and_ack = await raw.pttl(stream)
        await transport.send_reply(address, b"{}")  # the plain reply script
        after_reply = await raw.pttl(stream)
        left = await raw.pttl(alive)
    assert 0 < after_reply_and_ack <= 2000
    assert 0 < after_reply <= 2000
    assert after_reply <= left + 50  # never outlives the liveness key


def _records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= level]


@pytest.mark.parametrize("deleted", ["streams", "group"])
async def test_a_queue_deleted_under_a_running_worker_is_restored_with_one_warning(
    url: str, raw: Redis, caplog: pytest.LogCaptureFixture, deleted: str
) -> None:
    broker, echo = _echo_broker(url)

    caplog.set_level(logging.WARNING, logger="aq")
    async with broker, running_worker(broker):
        assert await (await echo.kiq(1)).result(timeout=10) == 1
        streams = broker.transport.context.keys.queue("default").streams  # type: ignore[attr-defined]
        if deleted == "streams":
            await raw.delete(*streams)
        else:
            for stream in streams:
                await raw.xgroup_destroy(stream, "aq-workers")
        # Sent after the deletion: runs without a worker restart.
        assert await (await echo.kiq(2)).result(timeout=10) == 2
        assert await (await echo.kiq(3)).result(timeout=10) == 3
    warnings = _records(caplog, logging.WARNING)
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("redis.group_restored queue=default")
    assert "was deleted" in warnings[0]


async def test_junk_in_the_delayed_set_is_dead_lettered_and_delayed_tasks_still_run(
    url: str, raw: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    broker, echo = _echo_broker(url)

    caplog.set_level(logging.WARNING, logger="aq")
    keys: Any = broker.transport.context.keys.queue("default")  # type: ignore[attr-defined]
    async with broker:
        await raw.zadd(keys.delayed, {b"junk": 1.0, b"x:not-a-nonce:{}": 2.0})
        handles = [await echo.options(delay=0.2).kiq(i) for i in range(3)]
        async with running_worker(broker):
            assert [await h.result(timeout=10) for h in handles] == [0, 1, 2]
            # The scheduler lives on: later delayed tasks are moved too.
            assert await (await echo.options(delay=0.1).kiq(7)).result(timeout=10) == 7
        letters = await broker.admin.dead_letters("default")
    assert sorted(d.body for d in letters) == [b"junk", b"x:not-a-nonce:{}"]
    assert all(d.reason.startswith("malformed entry in the delayed set") for d in letters)
    warnings = _records(caplog, logging.WARNING)
    assert warnings == ["redis.malformed_delayed queue=default count=2 action=dead-lettered"]


async def test_a_graceful_stop_returns_entries_read_for_it_whose_answer_it_never_got(
    url: str, raw: Redis
) -> None:
    transport: Any = aq.Broker(url).transport
    async with transport:
        stream = transport.context.keys.queue("default").streams[0]
        await transport.publish("default", b"held")
        consumer = await transport.consume(["default"], 1)  # full once it holds one
        assert (await consumer.get()).body == b"held"
        await transport.publish("default", b"lost in transit")
        # Redis hands an entry to a read of this consumer's whose answer never arrives
        # (the read was cancelled as Redis answered, or its connection dropped).
        await raw.xreadgroup("aq-workers", consumer.name, {stream: ">"}, count=1)
        await consumer.close()
        again = await transport.consume(["default"], 10)
        try:
            bodies = sorted([(await again.get()).body, (await again.get()).body])
        finally:
            await again.close()
    assert bodies == [b"held", b"lost in transit"]


@pytest.mark.parametrize("script", ["ISOLATE", "REQUEUE", "DEAD_LETTER"])
async def test_a_settling_script_run_again_after_its_answer_was_lost_copies_nothing_twice(
    url: str, raw: Redis, script: str
) -> None:
    transport: Any = aq.Broker(url).transport
    async with transport:
        keys = transport.context.keys.queue("default")
        await transport.publish("default", b"once")
        consumer = await transport.consume(["default"], 1)
        try:
            delivery = await consumer.get()
            args = {
                "ISOLATE": ([delivery.stream, keys.isolated], [delivery.entry_id, b"once"]),
                "REQUEUE": ([delivery.stream], [delivery.entry_id, b"once", 1]),
                "DEAD_LETTER": (
                    [delivery.stream, keys.dead],
                    [delivery.entry_id, b"once", "r", 0, "q"],
                ),
            }[script]
            for _ in range(2):  # as redis-py does when the first answer is lost
                await transport.context.run_script(script, args[0], ["aq-workers", *args[1]])
            copies = sum([await raw.xlen(s) for s in (*keys.streams, keys.isolated, keys.dead)])
            delivery.abandon()  # settled behind the consumer's back
        finally:
            await consumer.close()
    assert copies == 1

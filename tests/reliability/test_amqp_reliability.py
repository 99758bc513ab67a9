"""Nothing is lost on RabbitMQ: worker crashes, broker restarts, dropped
connections, poison messages, outages and many waiting producers.

Tests that kill the broker run a private node (tests/reliability/rabbit.py);
the others use the shared server `make test` starts, under a fresh prefix.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import orjson
import pytest
from redis.asyncio import Redis

import aq
from aq.testing import running_worker
from tests.conftest import AMQP_URL, REDIS_URL
from tests.reliability.rabbit import RabbitServer, TcpProxy
from tests.reliability.workers import kill_a_worker_running, seconds_kiq_waits_while_down

pytestmark = pytest.mark.slow


def _url(base: str = AMQP_URL, **options: object) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"prefix": _prefix(), **options}.items())
    return f"{base}?{query}"


def _prefix() -> str:
    return f"aqrel-{uuid.uuid4().hex[:12]}"


async def _delete(url: str, queues: list[str]) -> None:
    transport: Any = aq.Broker(url).transport
    async with transport:
        transport.declarer.declared.update(queues)
        await transport.delete_namespace()


@pytest.fixture
async def shared_url() -> AsyncIterator[str]:
    """A fresh namespace on the shared server, deleted afterwards."""
    url = _url()
    yield url
    await _delete(url, ["default"])


@pytest.fixture
async def record() -> AsyncIterator[tuple[str, Redis]]:
    """A Redis database where tests/apps/reliable.py records starts and runs."""
    url = REDIS_URL.rsplit("/", 1)[0] + "/13"
    client = Redis.from_url(url)
    await client.delete("started", "runs")
    try:
        yield url, client
    finally:
        await client.delete("started", "runs")
        await client.aclose()


@pytest.mark.timeout(120)
async def test_a_killed_worker_loses_nothing_and_repeats_at_most_what_was_in_flight(
    shared_url: str, record: tuple[str, Redis]
) -> None:
    record_url, log = record
    results, runs = await kill_a_worker_running(shared_url, record_url, log)
    assert sorted(results) == list(range(500))
    assert set(runs) == set(range(500))
    assert sum(runs.values()) - 500 <= 500  # duplicates at most the in-flight count


@pytest.mark.timeout(180)
async def test_a_rabbitmq_restart_during_publish_and_consume_loses_nothing(
    rabbit_server: RabbitServer,
) -> None:
    broker = aq.Broker(_url(rabbit_server.url, publish_timeout=60))
    runs: Counter[int] = Counter()

    @broker.task(name="echo")
    async def echo(i: int) -> int:
        runs[i] += 1
        await asyncio.sleep(0.001)
        return i

    async with broker, running_worker(broker, concurrency=200):
        handles = [await echo.kiq(i) for i in range(1000)]
        await rabbit_server.kill()  # SIGKILL mid-stream: confirmed messages are on disk
        restart = asyncio.create_task(rabbit_server.start())
        # These kiq() calls ride out the outage: they retry until the node is back.
        handles += [await echo.kiq(i) for i in range(1000, 2000)]
        await restart
        results = await asyncio.gather(*(h.result(timeout=90) for h in handles))
    assert sorted(results) == list(range(2000))
    assert set(runs) == set(range(2000))


@pytest.mark.timeout(120)
async def test_a_dropped_connection_loses_nothing_and_consumers_resume(
    shared_url: str,
) -> None:
    port = int(AMQP_URL.rsplit(":", 1)[1].split("/")[0])
    proxy = TcpProxy(port)
    await proxy.start()
    broker = aq.Broker(proxy.url_for(shared_url))
    cut_done = asyncio.Event()

    @broker.task(name="echo")
    async def echo(i: int) -> int:
        if i == 250 and not cut_done.is_set():  # it runs again after the reconnect
            cut_done.set()
            await proxy.cut()  # the network fails while this very task runs
        return i

    try:
        async with broker, running_worker(broker, concurrency=50):
            handles = [await echo.kiq(i) for i in range(500)]
            await cut_done.wait()
            handles += [await echo.kiq(i) for i in range(500, 600)]
            results = await asyncio.gather(*(h.result(timeout=60) for h in handles))
            # Consumers came back: a task sent now still runs.
            assert await (await echo.kiq(600)).result(timeout=30) == 600
    finally:
        await proxy.close()
    assert sorted(results) == list(range(600))


@pytest.mark.timeout(60)
async def test_poison_messages_are_dead_lettered_and_work_goes_on(shared_url: str) -> None:
    broker = aq.Broker(shared_url)

    @broker.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    work_queue = broker.transport.names.queue("default").work  # type: ignore[attr-defined]
    unknown = orjson.dumps({"v": 1, "id": "u1", "task": "nobody.knows", "queue": "default"})
    async with broker:
        await broker.transport.declarer.queue("default")  # type: ignore[attr-defined]
        # Sent by something else entirely: no aq headers, not persistent, odd properties.
        raw = await aio_pika.connect(AMQP_URL)
        async with raw:
            channel = await raw.channel()
            for body in (b"\xff\xfe not json", b"", unknown):
                await channel.default_exchange.publish(
                    aio_pika.Message(body, content_type="application/x-unknown"),
                    routing_key=work_queue,
                )
        async with running_worker(broker):
            assert await (await add.kiq(2, 2)).result(timeout=10) == 4
        letters = await broker.admin.dead_letters("default")
        stats = await broker.admin.stats("default")
    reasons = sorted(d.reason for d in letters)
    assert len(reasons) == 3
    assert reasons[0].startswith("undecodable message")
    assert reasons[1].startswith("undecodable message")
    assert reasons[2] == "unknown task: 'nobody.knows'"
    assert sorted(d.body for d in letters) == sorted([b"\xff\xfe not json", b"", unknown])
    assert (stats.ready, stats.unacked, stats.dead) == (0, 0, 3)


@pytest.mark.timeout(60)
async def test_many_concurrent_callers_on_one_connection_get_their_own_results(
    shared_url: str,
) -> None:
    broker = aq.Broker(shared_url)

    @broker.task(name="square")
    async def square(x: int) -> int:
        await asyncio.sleep(0.01)
        return x * x

    async def call(i: int) -> int:
        return await (await square.kiq(i)).result(timeout=30)

    async with broker, running_worker(broker, concurrency=100):
        results = await asyncio.gather(*(call(i) for i in range(200)))
    assert results == [i * i for i in range(200)]


@pytest.mark.timeout(60)
async def test_kiq_during_an_outage_raises_broker_unavailable_after_the_publish_timeout(
    rabbit_server: RabbitServer,
) -> None:
    waited = await seconds_kiq_waits_while_down(
        _url(rabbit_server.url, publish_timeout=1), rabbit_server.kill
    )
    assert 1 <= waited < 10


async def test_an_unreachable_rabbitmq_fails_at_startup_with_broker_unavailable() -> None:
    broker = aq.Broker("amqp://guest:guest@127.0.0.1:1/?publish_timeout=0.5")
    with pytest.raises(aq.BrokerUnavailable, match="connect"):
        await broker.startup()


async def test_wrong_credentials_or_vhost_fail_at_startup_saying_what_to_change() -> None:
    wrong = aq.Broker(AMQP_URL.replace("guest:guest", "guest:guess"))
    with pytest.raises(aq.ConfigurationError, match="refused the credentials"):
        await wrong.startup()
    missing = aq.Broker(AMQP_URL.rstrip("/") + "/no-such-vhost")
    with pytest.raises(aq.ConfigurationError, match="virtual host"):
        await missing.startup()

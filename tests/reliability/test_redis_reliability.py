"""Nothing is lost on Redis: worker crashes, server crashes, long tasks, poison.

Each test runs its own redis-server (tests/reliability/conftest.py) so it can
kill it without disturbing the rest of the suite.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

import aq
from aq.testing import running_worker
from tests.reliability.conftest import RedisServer, Sentinel
from tests.reliability.workers import kill_a_worker_running, seconds_kiq_waits_while_down

pytestmark = pytest.mark.slow


@pytest.mark.timeout(90)
async def test_a_killed_worker_loses_nothing_and_repeats_at_most_what_was_in_flight(
    redis_server: RedisServer,
) -> None:
    record_url = redis_server.url.replace("/0", "/1")
    record = Redis.from_url(record_url)
    try:
        results, runs = await kill_a_worker_running(
            f"{redis_server.url}?visibility_timeout=2", record_url, record
        )
    finally:
        await record.aclose()
    assert sorted(results) == list(range(500))
    assert set(runs) == set(range(500))
    assert sum(runs.values()) - 500 <= 500  # duplicates at most the in-flight count


@pytest.mark.timeout(90)
async def test_a_redis_restart_during_publish_and_consume_loses_nothing(
    redis_server: RedisServer,
) -> None:
    broker = aq.Broker(f"{redis_server.url}?visibility_timeout=5&publish_timeout=20")

    @broker.task(name="echo")
    async def echo(i: int) -> int:
        return i

    async with broker, running_worker(broker, concurrency=200):
        handles = [await echo.kiq(i) for i in range(1000)]
        await redis_server.kill()  # SIGKILL mid-stream; appendfsync always keeps every write
        restart = asyncio.create_task(redis_server.start())
        # These kiq() calls ride out the outage: they retry until the server is back.
        handles += [await echo.kiq(i) for i in range(1000, 2000)]
        await restart
        results = await asyncio.gather(*(h.result(timeout=60) for h in handles))
    assert sorted(results) == list(range(2000))


@pytest.mark.timeout(60)
async def test_scripts_the_server_forgot_are_loaded_again_and_nothing_is_lost(
    redis_server: RedisServer,
) -> None:
    broker = aq.Broker(redis_server.url)

    @broker.task(name="echo")
    async def echo(i: int) -> int:
        return i

    admin = Redis.from_url(redis_server.url)
    try:
        async with broker, running_worker(broker):
            assert await (await echo.kiq(-1)).result(timeout=10) == -1
            await admin.script_flush()  # as after a restart without persistence
            # One at a time (each sent at once) ...
            handles = [await echo.kiq(i) for i in range(150)]
            await admin.script_flush()
            # ... and all together (merged into pipelined script calls).
            handles += await asyncio.gather(*(echo.kiq(i) for i in range(150, 300)))
            results = await asyncio.gather(*(h.result(timeout=20) for h in handles))
            assert await admin.xlen("aq:{default}:p0") == 0  # every entry settled
    finally:
        await admin.aclose()
    assert results == list(range(300))


@pytest.mark.timeout(60)
async def test_a_task_longer_than_the_visibility_timeout_is_not_redelivered(
    redis_server: RedisServer,
) -> None:
    broker = aq.Broker(f"{redis_server.url}?visibility_timeout=1")
    runs: list[int] = []

    @broker.task(name="slow")
    async def slow() -> str:
        runs.append(1)
        await asyncio.sleep(3.5)  # three visibility timeouts
        return "once"

    async with broker, running_worker(broker), running_worker(broker):
        assert await (await slow.kiq()).result(timeout=30) == "once"
    assert runs == [1]


@pytest.mark.timeout(60)
async def test_malformed_entries_and_unknown_tasks_are_dead_lettered_and_work_goes_on(
    redis_server: RedisServer,
) -> None:
    broker = aq.Broker(redis_server.url)

    @broker.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    stream = broker.transport.context.keys.queue("default").streams[0]  # type: ignore[attr-defined]
    raw = Redis.from_url(redis_server.url)
    unknown = {"v": 1, "id": "u1", "task": "nobody.knows", "queue": "default"}
    try:
        async with broker:
            await broker.transport.context.ensure_groups(  # type: ignore[attr-defined]
                broker.transport.context.keys.queue("default")  # type: ignore[attr-defined]
            )
            await raw.xadd(stream, {"b": b"\xff\xfe not json"})
            await raw.xadd(stream, {"unexpected": b"field"})
            await raw.xadd(stream, {"b": orjson.dumps(unknown)})
            async with running_worker(broker):
                assert await (await add.kiq(2, 2)).result(timeout=10) == 4
            letters = await broker.admin.dead_letters("default")
            stats = await broker.admin.stats("default")
    finally:
        await raw.aclose()
    reasons = sorted(d.reason for d in letters)
    assert len(reasons) == 3
    assert reasons[0].startswith("undecodable message")
    assert reasons[1].startswith("undecodable message")
    assert reasons[2] == "unknown task: 'nobody.knows'"
    assert (stats.ready, stats.unacked, stats.dead) == (0, 0, 3)


@pytest.mark.timeout(60)
async def test_each_delayed_task_is_moved_and_run_exactly_once_with_many_workers(
    redis_server: RedisServer,
) -> None:
    broker = aq.Broker(redis_server.url)
    runs: Counter[int] = Counter()

    @broker.task(name="later")
    async def later(i: int) -> int:
        runs[i] += 1
        return i

    async with broker:
        handles = [await later.options(delay=0.3).kiq(i) for i in range(300)]
        async with running_worker(broker), running_worker(broker), running_worker(broker):
            results = await asyncio.gather(*(h.result(timeout=30) for h in handles))
    assert sorted(results) == list(range(300))
    assert runs == Counter(range(300))  # three schedulers, yet each task ran once


@pytest.mark.timeout(60)
async def test_kiq_during_an_outage_raises_broker_unavailable_after_the_publish_timeout(
    redis_server: RedisServer,
) -> None:
    waited = await seconds_kiq_waits_while_down(
        f"{redis_server.url}?publish_timeout=1", redis_server.kill
    )
    assert 1 <= waited < 10


async def test_an_unreachable_redis_fails_at_startup_with_broker_unavailable() -> None:
    broker = aq.Broker("redis://127.0.0.1:1/0?publish_timeout=0.5")
    with pytest.raises(aq.BrokerUnavailable, match="connect"):
        await broker.startup()


async def test_a_password_in_the_url_is_used_and_a_wrong_one_fails_at_startup(
    tmp_path: Path,
) -> None:
    server = RedisServer(tmp_path, password="s3cret")
    await server.start()
    try:
        broker = aq.Broker(server.url)

        @broker.task(name="add")
        async def add(x: int, y: int) -> int:
            return x + y

        async with broker, running_worker(broker):
            assert await (await add.kiq(1, 2)).result(timeout=10) == 3
        wrong = aq.Broker(server.url.replace("s3cret", "guess"))
        with pytest.raises(aq.ConfigurationError, match="refused the credentials"):
            await wrong.startup()
    finally:
        await server.kill()


async def test_a_sentinel_url_finds_the_master(redis_server: RedisServer, tmp_path: Path) -> None:
    sentinel = Sentinel(tmp_path, redis_server)
    await sentinel.start()
    try:
        broker = aq.Broker(f"redis+sentinel://127.0.0.1:{sentinel.port}/aqtest/0")

        @broker.task(name="add")
        async def add(x: int, y: int) -> int:
            return x + y

        async with broker, running_worker(broker):
            assert await (await add.kiq(2, 3)).result(timeout=10) == 5
        direct = Redis.from_url(redis_server.url)
        try:
            assert await direct.exists("aq:{default}:p0")  # the queue lives on the master
        finally:
            await direct.aclose()
    finally:
        await sentinel.kill()


async def test_consumers_of_dead_workers_are_forgotten_but_not_busy_ones(
    redis_server: RedisServer,
) -> None:
    broker = aq.Broker(redis_server.url)
    transport: Any = broker.transport
    raw = Redis.from_url(redis_server.url)
    try:
        async with broker:
            keys = transport.context.keys.queue("default")
            await transport.context.ensure_groups(keys)
            stream = keys.streams[0]
            await broker.transport.publish("default", b"{}")
            await broker.transport.publish("default", b"{}")
            # "ghost" died holding nothing; "holder" died holding an entry.
            read: Any = await raw.xreadgroup("aq-workers", "ghost", {stream: ">"}, count=1)
            entry = read[0][1][0][0]
            await raw.xack(stream, "aq-workers", entry)
            await raw.xreadgroup("aq-workers", "holder", {stream: ">"}, count=1)
            consumer: Any = await broker.transport.consume(["other"], 10)
            consumer.queues = [keys]  # look after "default" without claiming its entries
            try:
                await asyncio.sleep(0.3)  # let both fall silent: idleness is measured in time
                assert await consumer.forget_dead_consumers(0.2) == 1
            finally:
                await consumer.close()
            names = {c["name"] for c in await raw.xinfo_consumers(stream, "aq-workers")}
    finally:
        await raw.aclose()
    assert names == {b"holder"}  # it still holds an entry; the ghost is gone

"""Results, streams and progress come back to the producer that sent the task."""

from __future__ import annotations

import asyncio
import gc
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pydantic
import pytest

import aq
from aq.testing import running_worker


async def test_result_timeout_raises_result_timeout(broker: aq.Broker) -> None:
    @broker.task
    async def noop() -> None:
        return None

    handle = await noop.kiq()
    with pytest.raises(aq.ResultTimeout):
        await handle.result(timeout=0.05)


async def test_many_concurrent_results_resolve_to_their_own_values(broker: aq.Broker) -> None:
    @broker.task
    async def echo(value: int) -> int:
        await asyncio.sleep(0)
        return value

    async with running_worker(broker, concurrency=50):
        handles = await asyncio.gather(*(echo.kiq(i) for i in range(500)))
        results = await asyncio.gather(*(h.result(timeout=10) for h in handles))
    assert results == list(range(500))


async def test_sync_task_runs_in_a_worker_thread(broker: aq.Broker) -> None:
    @broker.task
    def which_thread() -> int:
        return threading.get_ident()

    async with running_worker(broker):
        ident = await (await which_thread.kiq()).result(timeout=5)
    assert ident != threading.get_ident()


async def test_calling_a_task_directly_runs_it_in_process(broker: aq.Broker) -> None:
    @broker.task
    async def add(x: int, y: int) -> int:
        return x + y

    @broker.task
    def double(x: int) -> int:
        return 2 * x

    assert await add(1, 2) == 3
    assert double(4) == 8
    assert (await broker.admin.stats(add.config.queue)).ready == 0


@dataclass
class Point:
    x: int
    at: datetime


class User(pydantic.BaseModel):
    id: uuid.UUID
    name: str


async def test_typed_values_arrive_as_their_declared_types(broker: aq.Broker) -> None:
    seen: list[object] = []

    @broker.task
    async def inspect_args(point: Point, user: User, when: datetime, key: uuid.UUID) -> Point:
        seen.extend([point, user, when, key])
        return Point(point.x + 1, when)

    now = datetime.now(UTC)
    user = User(id=uuid.uuid4(), name="ada")
    key = uuid.uuid4()
    async with running_worker(broker):
        result = await (await inspect_args.kiq(Point(1, now), user, now, key)).result(timeout=5)
    assert seen == [Point(1, now), user, now, key]
    assert result == Point(2, now)


async def test_async_generator_items_stream_back_in_order(broker: aq.Broker) -> None:
    @broker.task
    async def count(n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    async with running_worker(broker):
        handle = await count.kiq(100)
        assert [i async for i in handle.stream()] == list(range(100))
        await handle.result(timeout=5)  # the outcome of a stream is its end: no error


async def test_a_failing_stream_yields_items_then_raises(broker: aq.Broker) -> None:
    @broker.task
    async def broken(n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i
        raise RuntimeError("source dried up")

    received: list[int] = []
    async with running_worker(broker):
        handle = await broken.kiq(3)
        stream = handle.stream()
        with pytest.raises(aq.TaskFailed, match="source dried up"):  # noqa: PT012
            async for item in stream:
                received.append(item)
    assert received == [0, 1, 2]


async def test_a_retried_stream_delivers_each_item_once(broker: aq.Broker) -> None:
    @broker.task(retries=1, retry_backoff=0.01)
    async def flaky_stream() -> AsyncIterator[int]:
        yield 0
        yield 1
        if aq.context().attempt == 1:
            raise RuntimeError("first attempt fails after two items")
        yield 2

    async with running_worker(broker):
        handle = await flaky_stream.kiq()
        assert [i async for i in handle.stream()] == [0, 1, 2]


async def test_progress_reports_reach_iterator_and_callback(broker: aq.Broker) -> None:
    listening = asyncio.Event()

    @broker.task
    async def work(steps: int) -> str:
        # A reply can overtake kiq()'s return (RabbitMQ confirms a persistent
        # message after delivering it), and the callback hears reports from now on.
        await listening.wait()
        for step in range(steps):
            await aq.context().report_progress({"step": step})
        return "done"

    called: list[object] = []
    async with running_worker(broker):
        handle = await work.kiq(3)
        handle.on_progress(called.append)
        listening.set()
        reports = [p async for p in handle.progress()]
        assert await handle.result(timeout=5) == "done"
    assert reports == [{"step": 0}, {"step": 1}, {"step": 2}]
    assert called == reports


async def test_context_exposes_id_attempt_and_headers(broker: aq.Broker) -> None:
    @broker.task
    async def who_am_i() -> dict[str, object]:
        ctx = aq.context()
        return {"id": ctx.task_id, "attempt": ctx.attempt, "headers": dict(ctx.headers)}

    async with running_worker(broker):
        handle = await who_am_i.options(headers={"tenant": "acme"}, task_id="fixed-id").kiq()
        info = await handle.result(timeout=5)
    assert info == {"id": "fixed-id", "attempt": 1, "headers": {"tenant": "acme"}}
    assert handle.id == "fixed-id"


async def test_context_outside_a_task_raises() -> None:
    with pytest.raises(aq.AQError, match="only available inside a task"):
        aq.context()


async def test_dropped_handles_leave_nothing_behind(broker: aq.Broker) -> None:
    @broker.task
    async def noop(i: int) -> int:
        return i

    for i in range(200):
        await noop.kiq(i)  # handle dropped at once
    gc.collect()
    assert broker.pending_replies == 0
    async with running_worker(broker) as worker:
        await worker.wait_idle()
    assert broker.pending_replies == 0


async def test_handles_kept_until_awaited_are_released_after(broker: aq.Broker) -> None:
    @broker.task
    async def noop(i: int) -> int:
        return i

    async with running_worker(broker):
        handles = [await noop.kiq(i) for i in range(50)]
        assert broker.pending_replies == 50
        await asyncio.gather(*(h.result(timeout=5) for h in handles))
    del handles
    gc.collect()
    assert broker.pending_replies == 0


async def test_handles_sharing_a_task_id_all_get_the_result(broker: aq.Broker) -> None:
    @broker.task
    async def square(x: int) -> int:
        return x * x

    first = await square.options(task_id="same").kiq(3)
    second = await square.options(task_id="same").kiq(3)
    async with running_worker(broker):
        assert await first.result(timeout=5) == 9
        assert await second.result(timeout=5) == 9


async def test_results_kept_with_result_ttl_can_be_looked_up_from_another_broker(
    broker: aq.Broker, result_backend: str | None
) -> None:
    keeper = aq.Broker(broker.url, result_ttl=60, result_backend=result_backend)

    @keeper.task(name="square")
    async def square(x: int) -> int:
        return x * x

    @keeper.task(name="broken")
    async def broken() -> None:
        raise ValueError("nope")

    async with keeper, running_worker(keeper):
        done = await square.kiq(7)
        failed = await broken.kiq()
        assert await done.result(timeout=5) == 49
        with pytest.raises(aq.TaskFailed):
            await failed.result(timeout=5)
    lookup = aq.Broker(broker.url, result_backend=result_backend)  # as another process would
    async with lookup:
        assert await lookup.get_result(done.id) == 49
        with pytest.raises(aq.TaskFailed, match="nope"):
            await lookup.get_result(failed.id)
        with pytest.raises(aq.ResultNotFound):
            await lookup.get_result("no-such-task")


async def test_without_result_ttl_nothing_is_kept(broker: aq.Broker) -> None:
    @broker.task
    async def square(x: int) -> int:
        return x * x

    async with running_worker(broker):
        handle = await square.kiq(3)
        assert await handle.result(timeout=5) == 9
    with pytest.raises(aq.ResultNotFound):
        await broker.get_result(handle.id)

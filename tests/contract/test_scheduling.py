"""When and where tasks run: delays, priorities, queues and per-worker limits."""

from __future__ import annotations

import asyncio
import time

import aq
from aq.testing import running_worker


async def test_higher_priority_tasks_run_first(broker: aq.Broker) -> None:
    order: list[str] = []

    @broker.task
    async def record(label: str) -> None:
        order.append(label)

    for label, priority in [("low", 0), ("high", 9), ("mid", 5), ("low2", 0)]:
        await record.options(priority=priority).kiq(label)
    async with running_worker(broker, concurrency=1) as worker:
        await worker.wait_idle()
    assert order == ["high", "mid", "low", "low2"]


async def test_tasks_sent_together_keep_their_priority_order_and_queues(
    broker: aq.Broker,
) -> None:
    # Sent in one go, so a transport that merges a turn's publishes (Redis)
    # puts several streams and queues into one call.
    order: list[str] = []

    @broker.task
    async def record(label: str) -> None:
        order.append(label)

    calls = [("low", 0, "default"), ("high", 9, "default"), ("mid", 5, "default")]
    calls += [("other", 9, "elsewhere"), ("low2", 0, "default"), ("high2", 9, "default")]
    await asyncio.gather(*(record.options(priority=p, queue=q).kiq(label) for label, p, q in calls))
    async with running_worker(broker, queues=["default"], concurrency=1) as worker:
        await worker.wait_idle()
    # Sent concurrently, tasks of one priority have no order among themselves.
    assert [set(order[:2]), order[2], set(order[3:])] == [{"high", "high2"}, "mid", {"low", "low2"}]
    async with running_worker(broker, queues=["elsewhere"]) as worker:
        await worker.wait_idle()
    assert order[-1] == "other"


async def test_a_worker_consumes_only_its_queues(broker: aq.Broker) -> None:
    @broker.task(queue="emails")
    async def send_email(to: str) -> str:
        return to

    handle = await send_email.kiq("a@b.c")
    async with running_worker(broker, queues=["default"]) as worker:
        await worker.wait_idle()
    assert not handle.done
    async with running_worker(broker, queues=["emails"]):
        assert await handle.result(timeout=5) == "a@b.c"


async def test_options_queue_routes_one_call_elsewhere(broker: aq.Broker) -> None:
    @broker.task
    async def where() -> str:
        return aq.context().queue

    async with running_worker(broker, queues=["default", "urgent"]):
        assert await (await where.options(queue="urgent").kiq()).result(timeout=5) == "urgent"


async def test_worker_concurrency_bounds_tasks_running_at_once(broker: aq.Broker) -> None:
    running = 0
    peak = 0
    release = asyncio.Event()
    reached = asyncio.Event()

    @broker.task
    async def hold() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        if running == 5:
            reached.set()
        await release.wait()
        running -= 1

    async with running_worker(broker, concurrency=5) as worker:
        for _ in range(20):
            await hold.kiq()
        await reached.wait()
        stats = await broker.admin.stats("default")
        assert stats.unacked == 5  # prefetch is bounded by concurrency
        assert stats.ready == 15
        release.set()
        await worker.wait_idle()
    assert peak == 5


async def test_max_concurrency_caps_one_task_within_a_worker(broker: aq.Broker) -> None:
    running = 0
    peak = 0
    free_ran = asyncio.Event()
    release = asyncio.Event()

    @broker.task(max_concurrency=2)
    async def capped() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await release.wait()
        running -= 1

    @broker.task
    async def free() -> None:
        free_ran.set()

    async with running_worker(broker, concurrency=50) as worker:
        for _ in range(10):
            await capped.kiq()
        await free.kiq()
        await free_ran.wait()  # other tasks are not blocked by the cap
        assert running == 2
        release.set()
        await worker.wait_idle()
    assert peak == 2


async def test_rate_limit_spaces_task_starts(broker: aq.Broker) -> None:
    starts: list[float] = []

    @broker.task(rate_limit="20/s")
    async def limited() -> None:
        starts.append(time.monotonic())

    async with running_worker(broker, concurrency=100) as worker:
        for _ in range(25):
            await limited.kiq()
        await worker.wait_idle()
    assert len(starts) == 25
    # A burst of 20 may start at once; the 5 after it need at least 5/20 s more.
    assert starts[-1] - starts[0] >= 0.2


async def test_a_reused_task_call_measures_its_delay_from_each_kiq(broker: aq.Broker) -> None:
    @broker.task
    async def stamp() -> float:
        return time.time()

    later = stamp.options(delay=0.1)
    await asyncio.sleep(0.15)  # longer than the delay: it must count from kiq, not options()
    async with running_worker(broker):
        sent = time.time()
        ran_at = await (await later.kiq()).result(timeout=5)
    assert ran_at - sent >= 0.1

"""Worker lifecycle: acks after hand-off, graceful shutdown, requeue, middleware."""

from __future__ import annotations

import asyncio

import pytest

import aq
from aq.testing import drain, running_worker


async def test_a_message_stays_unacked_until_its_outcome_is_handed_off(
    broker: aq.Broker,
) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    @broker.task
    async def hold() -> str:
        started.set()
        await release.wait()
        return "done"

    async with running_worker(broker) as worker:
        handle = await hold.kiq()
        await started.wait()
        assert (await broker.admin.stats("default")).unacked == 1
        release.set()
        assert await handle.result(timeout=5) == "done"
        await worker.wait_idle()
        stats = await broker.admin.stats("default")
    assert (stats.ready, stats.unacked, stats.dead) == (0, 0, 0)


async def test_stop_lets_running_tasks_finish_within_the_grace_period(
    broker: aq.Broker,
) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    @broker.task
    async def short() -> str:
        started.set()
        await release.wait()
        return "finished"

    worker = aq.Worker(broker, shutdown_timeout=5)
    await worker.start()
    handle = await short.kiq()
    await started.wait()
    stopping = asyncio.create_task(worker.stop())
    await asyncio.sleep(0)  # the worker is now draining
    release.set()
    await stopping
    assert await handle.result(timeout=5) == "finished"
    assert (await broker.admin.stats("default")).unacked == 0


async def test_stop_returns_unfinished_tasks_to_the_queue_after_the_grace_period(
    broker: aq.Broker,
) -> None:
    started = asyncio.Event()
    attempts: list[int] = []

    @broker.task
    async def stubborn() -> str:
        attempts.append(aq.context().attempt)
        if len(attempts) == 1:
            started.set()
            await asyncio.Event().wait()
        return "second run"

    worker = aq.Worker(broker, shutdown_timeout=0.05)
    await worker.start()
    handle = await stubborn.kiq()
    await started.wait()
    await worker.stop()
    stats = await broker.admin.stats("default")
    assert (stats.ready, stats.unacked, stats.dead) == (1, 0, 0)
    async with running_worker(broker):
        assert await handle.result(timeout=5) == "second run"
    assert attempts == [1, 1]  # a requeue is not a retry: no attempt was used up


async def test_a_worker_with_max_tasks_stops_after_that_many(broker: aq.Broker) -> None:
    @broker.task
    async def noop() -> None:
        return None

    for _ in range(5):
        await noop.kiq()
    worker = aq.Worker(broker, max_tasks=3)
    await worker.start()
    await worker.wait_stopped()
    assert worker.started_count == 3
    assert (await broker.admin.stats("default")).ready == 2


async def test_drain_runs_every_queued_task_including_retries_and_delays(
    broker: aq.Broker,
) -> None:
    done: list[int] = []

    @broker.task(retries=1, retry_backoff=0.01)
    async def work(i: int) -> None:
        if i == 0 and aq.context().attempt == 1:
            raise RuntimeError("retry me")
        done.append(i)

    await work.kiq(0)
    await work.options(delay=0.05).kiq(1)
    await work.kiq(2)
    await drain(broker)
    assert sorted(done) == [0, 1, 2]


class Recorder(aq.Middleware):
    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    async def before_publish(self, message: aq.message.TaskMessage) -> None:
        message.headers.setdefault("seen_by", []).append(self.name)
        self.log.append(f"{self.name}.before_publish")

    async def after_publish(self, message: aq.message.TaskMessage) -> None:
        self.log.append(f"{self.name}.after_publish")

    async def before_execute(self, message: aq.message.TaskMessage) -> None:
        self.log.append(f"{self.name}.before_execute")

    async def after_execute(self, message: aq.message.TaskMessage, outcome: aq.Outcome) -> None:
        self.log.append(f"{self.name}.after_execute:{outcome.status}")

    async def on_result(self, message: aq.message.TaskMessage, outcome: aq.Outcome) -> None:
        self.log.append(f"{self.name}.on_result:{outcome.value}")


async def test_middleware_hooks_wrap_publish_and_execute_in_order(broker: aq.Broker) -> None:
    log: list[str] = []
    broker.middleware.extend([Recorder("a", log), Recorder("b", log)])

    @broker.task
    async def headers() -> list[str]:
        log.append("task")
        return list(aq.context().headers["seen_by"])

    async with running_worker(broker) as worker:
        handle = await headers.kiq()
        assert await handle.result(timeout=5) == ["a", "b"]
        await worker.wait_idle()
    # The producer's and the worker's hooks interleave as the broker decides (a
    # worker may start before the producer hears back), but each side is ordered.
    publishing = [entry for entry in log if entry.endswith("_publish")]
    assert publishing == [
        "a.before_publish",
        "b.before_publish",
        "b.after_publish",
        "a.after_publish",
    ]
    assert [entry for entry in log if not entry.endswith("_publish")] == [
        "a.before_execute",
        "b.before_execute",
        "task",
        "b.after_execute:success",
        "a.after_execute:success",
        "b.on_result:['a', 'b']",
        "a.on_result:['a', 'b']",
    ]


async def test_a_middleware_that_raises_before_publish_aborts_kiq(broker: aq.Broker) -> None:
    class Refuse(aq.Middleware):
        async def before_publish(self, message: aq.message.TaskMessage) -> None:
            raise PermissionError("not allowed")

    broker.middleware.append(Refuse())

    @broker.task
    async def noop() -> None:
        return None

    with pytest.raises(PermissionError):
        await noop.kiq()
    assert (await broker.admin.stats("default")).ready == 0


async def test_running_tasks_keep_their_claim_alive_with_heartbeats(
    broker: aq.Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    beats = asyncio.Event()
    beat_count = 0
    delivery_type = type(await _one_delivery(broker))

    async def keep_alive(self: object) -> None:
        nonlocal beat_count
        beat_count += 1
        if beat_count == 3:
            beats.set()

    monkeypatch.setattr(delivery_type, "keep_alive", keep_alive)
    monkeypatch.setattr(broker.transport, "heartbeat_interval", 0.01)

    @broker.task
    async def long_running() -> str:
        await beats.wait()
        return "still mine"

    async with running_worker(broker):
        assert await (await long_running.kiq()).result(timeout=5) == "still mine"
    assert beat_count >= 3


async def _one_delivery(broker: aq.Broker) -> object:
    """A settled delivery of this transport, to learn its type."""
    await broker.transport.publish("probe", b"{}")
    consumer = await broker.transport.consume(["probe"], 1)
    delivery = await consumer.get()
    await delivery.ack()
    await consumer.close()
    return delivery


async def test_a_stopped_worker_no_longer_counts_as_a_consumer(broker: aq.Broker) -> None:
    @broker.task
    async def noop() -> None:
        return None

    async with running_worker(broker):
        await (await noop.kiq()).result(timeout=5)
        assert (await broker.admin.stats("default")).consumers == 1
    assert (await broker.admin.stats("default")).consumers == 0

"""Monitoring events: what a watcher sees of a task's life, on every broker."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

import aq
from aq.monitor.stream import EventStream
from aq.monitor.wire import Event
from aq.testing import running_worker

_ENDS = {"task-succeeded", "task-failed", "task-cancelled", "task-expired", "task-dead-lettered"}


async def _until(
    events: EventStream, done: Callable[[Event], bool], timeout: float = 10.0
) -> list[Event]:
    """Every event up to and including the first that ``done`` accepts."""
    seen: list[Event] = []
    async with asyncio.timeout(timeout):
        async for event in events:
            seen.append(event)
            if done(event):
                return seen
    raise AssertionError("unreachable")


def _of(task_id: str, seen: list[Event]) -> list[str]:
    """The types of ``task_id``'s events in the order they happened (the producer's
    and the worker's reach the broker in either order)."""
    return [e.type for e in sorted(seen, key=lambda e: e.ts) if e.task_id == task_id]


async def test_a_task_that_succeeds_is_sent_received_started_and_succeeds(
    broker: aq.Broker,
) -> None:
    broker.enable_events()

    @broker.task
    async def add(x: int, y: int) -> int:
        return x + y

    async with broker.subscribe_events() as events, running_worker(broker, events=True) as w:
        handle = await add.kiq(2, 3)
        assert await handle.result(timeout=5) == 5
        seen = await _until(events, lambda e: e.type == "task-succeeded")
    assert _of(handle.id, seen) == ["task-sent", "task-received", "task-started", "task-succeeded"]
    done = seen[-1]
    assert done.name == add.name
    assert done.get("queue") == "default"
    assert done.worker == w.id
    assert done.get("attempt") == 1
    assert isinstance(done.get("runtime"), float)
    assert done.get("runtime") >= 0
    assert isinstance(done.get("host"), str)
    assert done.get("host")
    assert done.ts > 0
    assert "result" not in done.fields  # results only when the task opts in
    assert all("args" not in e.fields for e in seen)


async def test_a_task_that_retries_then_fails_shows_each_attempt(broker: aq.Broker) -> None:
    broker.enable_events()

    @broker.task(retries=1, retry_backoff=0.01)
    async def flaky() -> None:
        raise ValueError("no luck")

    async with broker.subscribe_events() as events, running_worker(broker, events=True):
        handle = await flaky.kiq()
        with pytest.raises(aq.TaskFailed):
            await handle.result(timeout=10)
        seen = await _until(events, lambda e: e.type == "task-failed")
    assert _of(handle.id, seen) == [
        "task-sent",
        "task-received",
        "task-started",
        "task-retried",
        "task-received",
        "task-started",
        "task-failed",
    ]
    retried = next(e for e in seen if e.type == "task-retried")
    assert retried.get("attempt") == 1
    assert retried.get("error") == {"type": "ValueError", "message": "no luck"}
    assert retried.get("eta") > retried.ts
    failed = seen[-1]
    assert failed.get("attempt") == 2
    assert failed.get("error") == {"type": "ValueError", "message": "no luck"}


async def test_a_cancelled_task_ends_with_task_cancelled(broker: aq.Broker) -> None:
    broker.enable_events()
    started = asyncio.Event()

    @broker.task
    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    async with broker.subscribe_events() as events, running_worker(broker, events=True):
        handle = await forever.kiq()
        await started.wait()
        await handle.cancel()
        with pytest.raises(aq.TaskCancelled):
            await handle.result(timeout=5)
        seen = await _until(events, lambda e: e.type in _ENDS)
    assert _of(handle.id, seen) == ["task-sent", "task-received", "task-started", "task-cancelled"]


async def test_a_worker_announces_itself_and_says_goodbye(broker: aq.Broker) -> None:
    async with broker.subscribe_events() as events:
        async with running_worker(broker, events=True) as worker:
            online = await _until(events, lambda e: e.type == "worker-online")
        offline = await _until(events, lambda e: e.type == "worker-offline")
    assert online[-1].worker == worker.id
    assert online[-1].get("queues") == ["default"]
    assert online[-1].get("concurrency") == worker.concurrency
    assert offline[-1].worker == worker.id


async def test_arguments_and_results_appear_only_for_tasks_that_opt_in(broker: aq.Broker) -> None:
    broker.enable_events()

    @broker.task(event_data=True)
    async def shown(secret: str) -> str:
        return secret.upper()

    async with broker.subscribe_events() as events, running_worker(broker, events=True):
        handle = await shown.kiq("abc")
        await handle.result(timeout=5)
        seen = await _until(events, lambda e: e.type == "task-succeeded")
    by_type = {e.type: e for e in seen if e.task_id == handle.id}
    assert by_type["task-sent"].get("args") == ["abc"]
    assert by_type["task-received"].get("args") == ["abc"]
    assert by_type["task-succeeded"].get("result") == "ABC"


async def test_an_undecodable_message_is_reported_dead_lettered_with_its_reason(
    broker: aq.Broker,
) -> None:
    async with broker.subscribe_events() as events, running_worker(broker, events=True):
        await broker.transport.publish("default", b"\xff not a message")
        seen = await _until(events, lambda e: e.type == "task-dead-lettered")
    dead = seen[-1]
    assert dead.task_id is None
    assert dead.get("queue") == "default"
    assert "undecodable" in dead.get("reason")


async def test_without_events_a_worker_emits_nothing(broker: aq.Broker) -> None:
    @broker.task
    async def quiet() -> int:
        return 1

    async with broker.subscribe_events() as events:
        async with running_worker(broker):
            await (await quiet.kiq()).result(timeout=5)
        # A marker sent after the worker stopped arrives first: nothing came before it.
        emitter = broker.enable_events()
        emitter.emit("worker-offline", {"worker": "marker"})
        first = await _until(events, lambda e: True)
    assert [e.worker for e in first] == ["marker"]

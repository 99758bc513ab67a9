"""``broker.status(task_id)``: a task's state from any process, through its whole life."""

from __future__ import annotations

import asyncio
import time

import pytest

import aq
from aq.testing import running_worker
from tests.conftest import AMQP_URL, twin


@pytest.fixture
def tracked(stored_broker: aq.Broker) -> aq.Broker:
    """A broker that keeps results, and with them task states."""
    stored_broker.result_ttl = 60.0
    return stored_broker


async def _status(broker: aq.Broker, task_id: str) -> aq.TaskStatus:
    """The status as another process sees it."""
    other = twin(broker)
    other.result_ttl = broker.result_ttl  # the same app's broker, in another process
    async with other:
        return await other.status(task_id)


async def test_an_id_never_seen_is_unknown(tracked: aq.Broker) -> None:
    status = await _status(tracked, "never-sent")
    assert status.state == "unknown"
    assert status.task_id == "never-sent"


async def test_a_sent_task_is_queued_and_a_delayed_one_scheduled(tracked: aq.Broker) -> None:
    @tracked.task
    async def later() -> None: ...

    now = await later.kiq()
    delayed = await later.options(delay=300).kiq()
    queued = await _status(tracked, now.id)
    assert (queued.state, queued.name, queued.queue, queued.attempt) == (
        "queued",
        later.name,
        "default",
        1,
    )
    scheduled = await _status(tracked, delayed.id)
    assert scheduled.state == "scheduled"
    assert scheduled.eta is not None
    assert scheduled.eta > time.time() + 250


async def test_a_running_task_says_where_since_when_and_which_attempt(tracked: aq.Broker) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    @tracked.task
    async def slow() -> int:
        started.set()
        await release.wait()
        return 1

    async with running_worker(tracked) as worker:
        handle = await slow.kiq()
        await started.wait()
        await _written(worker)
        status = await _status(tracked, handle.id)
        assert status.state == "running"
        assert status.worker == worker.id
        assert status.attempt == 1
        assert status.since is not None
        assert status.since <= time.time()
        release.set()
        await handle.result(timeout=5)
    assert (await _status(tracked, handle.id)).state == "succeeded"


async def test_a_failed_attempt_waiting_for_its_retry_is_retrying(tracked: aq.Broker) -> None:
    @tracked.task(retries=1, retry_backoff=300)
    async def flaky() -> None:
        raise ValueError("not yet")

    async with tracked.subscribe_events() as events, running_worker(tracked, events=True) as w:
        handle = await flaky.kiq()
        async for event in events:
            if event.type == "task-retried":
                break
        await _written(w)
        status = await _status(tracked, handle.id)
    assert status.state == "retrying"
    assert status.attempt == 2
    assert status.eta is not None
    assert status.eta > time.time() + 100
    assert (status.error_type, status.error) == ("ValueError", "not yet")


async def test_final_states_succeeded_failed_cancelled_and_dead_lettered(
    tracked: aq.Broker,
) -> None:
    started = asyncio.Event()

    @tracked.task
    async def ok() -> int:
        return 1

    @tracked.task
    async def bad() -> None:
        raise KeyError("gone")

    @tracked.task
    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    async with running_worker(tracked) as worker:
        good, failing = await ok.kiq(), await bad.kiq()
        await good.result(timeout=5)
        with pytest.raises(aq.TaskFailed):
            await failing.result(timeout=5)
        stuck = await forever.kiq()
        await started.wait()
        await stuck.cancel()
        with pytest.raises(aq.TaskCancelled):
            await stuck.result(timeout=5)
        await tracked.publish(aq.TaskMessage("late", ok.name, "default", expires=time.time() - 1))
        await tracked.publish(aq.TaskMessage("nobody", "no.such.task", "default"))
        await worker.wait_idle()
    assert (await _status(tracked, good.id)).state == "succeeded"
    failed = await _status(tracked, failing.id)
    assert (failed.state, failed.error_type, failed.name) == ("failed", "KeyError", bad.name)
    assert (await _status(tracked, stuck.id)).state == "cancelled"
    expired = await _status(tracked, "late")
    assert (expired.state, expired.error_type) == ("dead-lettered", "aq.errors.TaskExpired")
    unknown = await _status(tracked, "nobody")
    assert (unknown.state, unknown.error_type) == ("dead-lettered", "aq.errors.UnknownTask")


async def test_status_of_a_broker_that_keeps_no_states_says_how_to_keep_them() -> None:
    for broker in (
        aq.Broker("memory://"),
        aq.Broker("memory://", result_ttl=60, track_states=False),
    ):
        with pytest.raises(aq.ConfigurationError, match="result_ttl"):
            await broker.status("any")


async def test_a_broker_that_keeps_no_states_writes_none(stored_broker: aq.Broker) -> None:
    stored_broker.result_ttl, stored_broker.track_states = 60.0, False

    @stored_broker.task
    async def quick() -> int:
        return 1

    async with running_worker(stored_broker):
        handle = await quick.kiq()
        await handle.result(timeout=5)
    assert stored_broker.store is not None
    assert await stored_broker.store.get(f"status:{handle.id}") is None
    assert await stored_broker.get_result(handle.id) == 1


async def test_status_without_a_store_says_to_give_one() -> None:
    broker = aq.Broker(AMQP_URL)  # RabbitMQ keeps no state by key
    with pytest.raises(aq.ConfigurationError, match=r"store='redis://"):
        await broker.status("any")


async def _written(worker: aq.Worker) -> None:
    """Wait for the states the worker is writing (it does not wait for them itself)."""
    assert worker.reporter.status is not None
    await worker.reporter.status.flush()


async def test_a_chains_steps_each_have_a_state_and_its_handle_the_outcome(
    tracked: aq.Broker,
) -> None:
    @tracked.task
    async def add(x: int, y: int) -> int:
        return x + y

    @tracked.task
    async def double(x: int) -> int:
        return 2 * x

    async with tracked.subscribe_events() as events, running_worker(tracked, events=True) as w:
        handle = await aq.chain(add.s(1, 2), double.s(), double.s()).kiq()
        assert await handle.result(timeout=10) == 12
        steps: list[str] = []
        async for event in events:
            if event.type == "task-succeeded" and event.get("root") == handle.id:
                steps.append(event.task_id or "")
                if len(steps) == 3:
                    break
        await _written(w)
    assert handle.id not in steps  # each step has an id of its own
    assert (await _status(tracked, handle.id)).state == "succeeded"  # the kept outcome
    names = [(await _status(tracked, step)) for step in steps]
    assert [(s.state, s.name) for s in names] == [
        ("succeeded", add.name),
        ("succeeded", double.name),
        ("succeeded", double.name),
    ]

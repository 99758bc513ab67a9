"""``broker.inspect`` and ``broker.control``: live workers answer and obey, on every broker."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import aq
from aq.testing import running_worker


async def test_every_live_worker_answers_a_ping(broker: aq.Broker) -> None:
    async with running_worker(broker) as one, running_worker(broker) as two:
        answers = await broker.inspect.ping(timeout=0.5)
    assert answers == {
        one.id: {"ok": "pong", "worker": one.id},
        two.id: {"ok": "pong", "worker": two.id},
    }


async def test_a_question_for_one_worker_is_answered_by_that_one_only(broker: aq.Broker) -> None:
    async with running_worker(broker), running_worker(broker) as two:
        answers = await broker.inspect.stats(worker=two.id, timeout=5)
    assert list(answers) == [two.id]
    stats = answers[two.id]
    assert stats["queues"] == ["default"]
    assert stats["concurrency"] == two.concurrency
    assert stats["pid"] > 0
    assert stats["max_rss_kib"] > 0


async def test_active_shows_running_tasks_and_reserved_those_waiting_their_turn(
    broker: aq.Broker,
) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    @broker.task(max_concurrency=1)
    async def one_at_a_time(n: int) -> None:
        started.set()
        await release.wait()

    async with running_worker(broker) as worker:
        first = await one_at_a_time.kiq(1)
        await started.wait()
        second = await one_at_a_time.kiq(2)
        reserved = await _until_listed(broker, "reserved", worker.id, second.id)
        active = (await broker.inspect.active(worker=worker.id, timeout=5))[worker.id]
        release.set()
        await second.result(timeout=5)
    [running] = active["tasks"]
    assert (running["id"], running["name"], running["attempt"]) == (
        first.id,
        one_at_a_time.name,
        1,
    )
    assert running["started_at"] <= time.time()
    assert "args" not in running  # arguments only for tasks that opt in (event_data)
    assert [t["id"] for t in reserved["tasks"]] == [second.id]


async def test_registered_lists_the_tasks_a_worker_runs_with_their_limits(
    broker: aq.Broker,
) -> None:
    @broker.task(rate_limit="10/s", retries=2, timeout=5)
    async def limited() -> None: ...

    async with running_worker(broker) as worker:
        answers = await broker.inspect.registered(worker=worker.id, timeout=5)
    [entry] = [t for t in answers[worker.id]["tasks"] if t["name"] == limited.name]
    assert entry["rate_limit"] == "10/s"
    assert (entry["retries"], entry["timeout"], entry["queue"]) == (2, 5, "default")


async def test_registered_shows_the_worker_defaults_where_a_task_sets_none(
    broker: aq.Broker,
) -> None:
    @broker.task
    async def bare() -> None: ...

    @broker.task(retries=None, soft_timeout=1)
    async def own() -> None: ...

    async with running_worker(
        broker, default_timeout=30, default_retries=4, default_rate_limit="2/s"
    ) as worker:
        answers = await broker.inspect.registered(worker=worker.id, timeout=5)
    entries = {t["name"]: t for t in answers[worker.id]["tasks"]}
    assert {k: entries[bare.name][k] for k in ("timeout", "retries", "rate_limit")} == {
        "timeout": 30,
        "retries": 4,
        "rate_limit": "2/s",
    }
    assert (entries[own.name]["retries"], entries[own.name]["soft_timeout"]) == (None, 1)


async def test_a_rate_limit_set_at_run_time_spaces_the_starts(broker: aq.Broker) -> None:
    starts: list[float] = []

    @broker.task
    async def tick(n: int) -> None:
        starts.append(time.monotonic())

    async with running_worker(broker) as worker:
        answers = await broker.control.rate_limit(tick, "5/s", worker=worker.id, timeout=5)
        assert answers[worker.id]["ok"] == f"rate limit of {tick.name} set to 5/s"
        handles = [await tick.kiq(n) for n in range(10)]
        await asyncio.gather(*(h.result(timeout=10) for h in handles))
        registered = await broker.inspect.registered(worker=worker.id, timeout=5)
    # A burst of 5 at once, then one every 0.2 s: the tenth starts 1 s after the first.
    assert starts[-1] - starts[0] >= 0.9
    [entry] = [t for t in registered[worker.id]["tasks"] if t["name"] == tick.name]
    assert entry["rate_limit"] == "5/s"


async def test_lifting_a_rate_limit_frees_the_tasks_already_waiting(broker: aq.Broker) -> None:
    @broker.task(rate_limit="1/m")
    async def slow_lane(n: int) -> int:
        return n

    async with running_worker(broker) as worker:
        handles = [await slow_lane.kiq(n) for n in range(3)]
        assert await handles[0].result(timeout=5) == 0
        await _until_listed(broker, "reserved", worker.id, handles[2].id)  # a minute to wait
        await broker.control.rate_limit(slow_lane, None, worker=worker.id, timeout=5)
        assert await asyncio.gather(*(h.result(timeout=5) for h in handles[1:])) == [1, 2]


async def test_a_rate_limit_for_a_task_a_worker_does_not_run_is_refused_by_it(
    broker: aq.Broker,
) -> None:
    async with running_worker(broker) as worker:
        answers = await broker.control.rate_limit("no.such.task", "1/s", timeout=0.5)
    assert "does not run a task named 'no.such.task'" in answers[worker.id]["error"]


async def test_shutdown_stops_the_worker_gracefully(broker: aq.Broker) -> None:
    async with running_worker(broker) as worker:
        answers = await broker.control.shutdown(worker=worker.id, timeout=5)
        await worker.wait_stopped()
    assert answers[worker.id]["ok"] == "shutting down"
    assert worker.shutdown_requested


async def test_with_no_live_worker_nobody_answers(broker: aq.Broker) -> None:
    assert await broker.inspect.ping(timeout=0.2) == {}


async def test_bad_questions_and_rates_fail_before_anything_is_sent(broker: aq.Broker) -> None:
    with pytest.raises(aq.ConfigurationError, match="ask one of ping, stats"):
        await broker.inspect.ask("everything")
    with pytest.raises(aq.ConfigurationError, match="invalid rate limit"):
        await broker.control.rate_limit("t", "fast")
    with pytest.raises(aq.ConfigurationError, match="timeout"):
        await broker.inspect.ping(timeout=0)


async def _until_listed(
    broker: aq.Broker, question: str, worker: str, task_id: str
) -> dict[str, Any]:
    """The worker's answer once it lists ``task_id`` (the message may still be on
    its way to the worker when the question is first asked)."""
    async with asyncio.timeout(10):
        while True:
            answer = (await broker.inspect.ask(question, worker=worker, timeout=5))[worker]
            if any(t["id"] == task_id for t in answer["tasks"]):
                return answer

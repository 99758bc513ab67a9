"""Failures: remote errors, time limits, retries and dead letters. Nothing is dropped."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import orjson
import pytest

import aq
from aq.message import new_id
from aq.testing import running_worker


async def dead_reasons(broker: aq.Broker, queue: str = "default") -> list[str]:
    return [d.reason for d in await broker.admin.dead_letters(queue)]


async def test_a_task_past_its_timeout_is_cancelled_and_fails_with_task_timeout(
    broker: aq.Broker,
) -> None:
    cancelled = asyncio.Event()

    @broker.task(timeout=0.05)
    async def slow() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with running_worker(broker):
        with pytest.raises(aq.TaskTimeout):
            await (await slow.kiq()).result(timeout=5)
    assert cancelled.is_set()
    assert any("TaskTimeout" in r for r in await dead_reasons(broker))


async def test_options_timeout_overrides_the_task_default(broker: aq.Broker) -> None:
    @broker.task(timeout=30)
    async def slow() -> None:
        await asyncio.Event().wait()

    async with running_worker(broker):
        with pytest.raises(aq.TaskTimeout):
            await (await slow.options(timeout=0.05).kiq()).result(timeout=5)


async def test_a_timeout_error_raised_by_the_task_is_an_ordinary_failure(
    broker: aq.Broker,
) -> None:
    @broker.task(timeout=30)
    async def gives_up() -> None:
        raise TimeoutError("upstream timed out")

    async with running_worker(broker):
        with pytest.raises(aq.TaskFailed) as info:
            await (await gives_up.kiq()).result(timeout=5)
    assert not isinstance(info.value, aq.TaskTimeout)
    assert info.value.remote_type == "TimeoutError"


async def test_retries_wait_with_growing_backoff(broker: aq.Broker) -> None:
    started: list[float] = []

    @broker.task(retries=2, retry_backoff=0.1)
    async def failing() -> None:
        started.append(time.monotonic())
        raise ValueError("nope")

    async with running_worker(broker):
        with pytest.raises(aq.TaskFailed):
            await (await failing.kiq()).result(timeout=5)
    first_wait, second_wait = started[1] - started[0], started[2] - started[1]
    # Equal jitter: attempt n waits between half and all of base * 2 ** (n - 1).
    assert first_wait >= 0.05
    assert second_wait >= 0.1


async def test_raising_retry_reruns_the_task_after_the_given_delay(broker: aq.Broker) -> None:
    started: list[float] = []

    @broker.task(retries=1, retry_backoff=30)
    async def later() -> int:
        started.append(time.monotonic())
        if aq.context().attempt == 1:
            raise aq.Retry(delay=0.05)
        return len(started)

    async with running_worker(broker):
        assert await (await later.kiq()).result(timeout=5) == 2
    assert 0.05 <= started[1] - started[0] < 5


async def test_an_undecodable_message_is_dead_lettered_and_work_goes_on(
    broker: aq.Broker,
) -> None:
    @broker.task
    async def add(x: int, y: int) -> int:
        return x + y

    await broker.transport.publish("default", b"\x00 definitely not json")
    await broker.transport.publish("default", orjson.dumps({"v": 99, "id": "x"}))
    async with running_worker(broker):
        assert await (await add.kiq(1, 2)).result(timeout=5) == 3
    reasons = sorted(await dead_reasons(broker))  # both were processed concurrently
    assert len(reasons) == 2
    assert reasons[0].startswith("undecodable message: not valid JSON")
    assert "unsupported protocol version 99" in reasons[1]


async def test_an_expired_task_is_dead_lettered_not_run(broker: aq.Broker) -> None:
    ran: list[int] = []

    @broker.task
    async def stale() -> None:
        ran.append(1)

    handle = await stale.options(expires=datetime.now(UTC) - timedelta(seconds=1)).kiq()
    async with running_worker(broker):
        with pytest.raises(aq.TaskFailed, match="expired"):
            await handle.result(timeout=5)
    assert ran == []
    assert await dead_reasons(broker) == ["expired before it ran"]


async def test_a_result_that_cannot_be_encoded_fails_the_task(broker: aq.Broker) -> None:
    @broker.task
    async def returns_object() -> object:
        return object()

    async with running_worker(broker):
        with pytest.raises(aq.TaskFailed) as info:
            await (await returns_object.kiq()).result(timeout=5)
    assert info.value.remote_type == "aq.errors.SerializationError"
    [reason] = await dead_reasons(broker)
    assert reason.startswith("result could not be encoded")


async def test_arguments_that_do_not_fit_the_annotations_fail_without_retry(
    broker: aq.Broker,
) -> None:
    other = aq.Broker(broker.url)  # an untyped producer that sends a bad date

    @other.task(name="typed")
    async def typed_producer(when: str) -> None:
        return None

    @broker.task(name="typed", retries=3)
    async def typed(when: datetime) -> None:
        return None

    async with other, running_worker(broker):
        with pytest.raises(aq.TaskFailed) as info:
            await (await typed_producer.kiq("not a date")).result(timeout=5)
    assert info.value.remote_type == "aq.errors.SerializationError"
    assert len(await dead_reasons(broker)) == 1


async def test_a_timeout_message_names_the_limit_once(broker: aq.Broker) -> None:
    @broker.task(timeout=0.05)
    async def slow() -> None:
        await asyncio.Event().wait()

    async with running_worker(broker):
        with pytest.raises(aq.TaskTimeout) as info:
            await (await slow.kiq()).result(timeout=5)
    assert info.value.remote_type == "aq.errors.TaskTimeout"
    assert info.value.remote_message == "ran longer than 0.05 s"
    assert str(info.value).count("TaskTimeout") == 1


async def test_an_expired_task_raises_task_expired(broker: aq.Broker) -> None:
    @broker.task
    async def stale() -> None:
        return None

    handle = await stale.options(expires=datetime.now(UTC) - timedelta(seconds=1)).kiq()
    async with running_worker(broker):
        with pytest.raises(aq.TaskExpired):
            await handle.result(timeout=5)


async def test_a_serialization_error_raised_by_the_task_body_is_retried(
    broker: aq.Broker,
) -> None:
    attempts: list[int] = []

    @broker.task(retries=1, retry_backoff=0.01)
    async def reports_badly() -> str:
        attempts.append(aq.context().attempt)
        if len(attempts) == 1:
            await aq.context().report_progress(object())
        return "ok"

    async with running_worker(broker):
        assert await (await reports_badly.kiq()).result(timeout=5) == "ok"
    assert attempts == [1, 2]


async def test_a_failing_after_hook_neither_reruns_nor_loses_the_task(broker: aq.Broker) -> None:
    runs: list[int] = []

    class Broken(aq.Middleware):
        async def after_execute(self, message: aq.TaskMessage, outcome: aq.Outcome) -> None:
            raise RuntimeError("metrics backend down")

        async def on_result(self, message: aq.TaskMessage, outcome: aq.Outcome) -> None:
            raise RuntimeError("metrics backend down")

    broker.middleware.append(Broken())

    @broker.task
    async def once() -> int:
        runs.append(1)
        return len(runs)

    async with running_worker(broker) as worker:
        assert await (await once.kiq()).result(timeout=5) == 1
        await worker.wait_idle()
    assert runs == [1]
    stats = await broker.admin.stats("default")
    assert (stats.ready, stats.unacked, stats.dead) == (0, 0, 0)


_DEEP = b"[" * 1000 + b"]" * 1000  # a 1,000-deep list, written as JSON by hand


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (b'["minus twenty-nine"]', "'i' of work(): expected int, got str ('minus twenty-nine')"),
        (b'[1, "1.5"]', "'x' of work(): expected float, got str ('1.5')"),
        (b"[1, " + _DEEP + b"]", "'x' of work(): expected float, got list ([[[[...]]]])"),
    ],
)
async def test_a_mistyped_message_is_dead_lettered_unrun_while_a_correct_one_runs(
    broker: aq.Broker, args: bytes, reason: str
) -> None:
    ran: list[int] = []

    @broker.task(name="work", retries=3)
    async def work(i: int, x: float = 0.0) -> None:
        ran.append(i)

    for sent in (args, b"[29]"):
        message = aq.TaskMessage(new_id(), "work", "default", args=["ARGS"], max_attempts=4)
        body = broker.encode(message).replace(b'["ARGS"]', sent)
        await broker.transport.publish("default", body)
    async with running_worker(broker) as worker:
        await worker.wait_idle()
    [dead] = await broker.admin.dead_letters("default")
    assert ran == [29]
    assert dead.reason == f"failed after 1 attempt(s): SerializationError: argument {reason}"
    assert args in dead.body

"""Retry policies and time limits, piece by piece: their options are checked when a
task is declared, ``max_attempts`` on the wire, the retry verdicts, the soft limit's
delivery into a coroutine, and the worker's defaults at ``aq worker``'s start-up."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import orjson
import pytest

import aq
from aq.errors import KEEP
from aq.message import TaskMessage, decode_task, encode_task
from aq.options import UNLIMITED
from aq.serializer import JSONSerializer
from aq.testing import running_worker
from aq.worker.deadlines import SoftLimited, run_with_deadline
from aq.worker.retrying import apply_override, attempts_for, judge
from tests.test_cli import APP, run_aq

JSON = JSONSerializer()


def declare(**options: Any) -> aq.Task[[], None]:
    broker = aq.Broker("memory://")

    @broker.task(**options)
    async def job() -> None: ...

    return job


# -- options, checked when the task is declared ----------------------------------------


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"retry_on": ValueError()}, "retry_on takes exception classes"),
        ({"retry_on": (ValueError, "KeyError")}, "retry_on takes exception classes"),
        ({"dont_retry_on": int}, "dont_retry_on takes exception classes"),
        ({"retries": -1}, "retries must be a non-negative int"),
        ({"soft_timeout": 0}, "soft_timeout must be a positive number of seconds"),
        ({"soft_timeout": 5, "timeout": 5}, r"soft_timeout \(5 s\) must be shorter than timeout"),
    ],
)
def test_bad_policy_options_fail_at_declaration(options: dict[str, Any], problem: str) -> None:
    with pytest.raises(aq.ConfigurationError, match=problem):
        declare(**options)


def test_a_soft_time_limit_needs_an_async_function() -> None:
    broker = aq.Broker("memory://")
    with pytest.raises(aq.ConfigurationError, match="soft_timeout needs an async function"):

        @broker.task(soft_timeout=1)
        def blocking() -> None: ...


def test_a_single_exception_class_is_a_tuple_of_one() -> None:
    assert declare(retry_on=ValueError).config.retry_on == (ValueError,)
    assert declare(dont_retry_on=(KeyError, aq.SoftTimeLimit)).config.dont_retry_on == (
        KeyError,
        aq.SoftTimeLimit,
    )


@pytest.mark.parametrize("retries", [-1, 1.5, True, "3"])
def test_retry_refuses_a_retries_that_is_not_a_count(retries: object) -> None:
    with pytest.raises(aq.ConfigurationError, match=r"aq\.Retry retries must be a whole number"):
        aq.Retry(retries=retries)  # type: ignore[arg-type]


# -- max_attempts on the wire -------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "max_attempts"),
    [({}, None), ({"retries": 0}, 1), ({"retries": 3}, 4), ({"retries": None}, UNLIMITED)],
)
def test_max_attempts_is_left_out_only_when_the_task_set_no_retries(
    options: dict[str, Any], max_attempts: int | None
) -> None:
    message = declare(**options).message((), {}, aq.task.SendOptions(), None)
    wire = orjson.loads(encode_task(message, JSON))
    assert wire.get("max_attempts", "left out") == (
        "left out" if max_attempts is None else max_attempts
    )
    assert decode_task(encode_task(message, JSON), JSON).max_attempts == max_attempts


@pytest.mark.parametrize(
    ("fields", "accepted"),
    [
        ({"attempt": 40, "max_attempts": 0}, True),  # without limit
        ({"attempt": 2}, True),  # the worker's default decides
        ({"attempt": 2, "max_attempts": 1}, False),
        ({"attempt": 1, "max_attempts": -1}, False),
    ],
)
def test_attempt_and_max_attempts_are_checked_when_decoded(
    fields: dict[str, int], accepted: bool
) -> None:
    body = orjson.dumps({"v": 1, "id": "a", "task": "t", "queue": "q", **fields})
    if accepted:
        assert decode_task(body, JSON).attempt == fields["attempt"]
    else:
        with pytest.raises(aq.MessageDecodeError, match="max_attempts"):
            decode_task(body, JSON)


# -- verdicts -----------------------------------------------------------------------------


def message(attempt: int, max_attempts: int | None) -> TaskMessage:
    return TaskMessage("id", "t", "q", attempt=attempt, max_attempts=max_attempts)


def test_the_budget_decides_when_the_policy_allows_a_retry() -> None:
    config = declare(retries=2).config
    assert judge(config, message(1, 3), Exception()) is None
    assert judge(config, message(3, 3), Exception()) == "failed"
    assert judge(config, message(99, UNLIMITED), Exception()) is None
    assert attempts_for(None) == 1
    assert attempts_for(4) == 5


def test_a_raised_retry_sets_the_budget_from_then_on() -> None:
    config = declare(retry_on=KeyError).config
    sent = message(1, 1)
    assert judge(config, sent, aq.Retry(retries=KEEP)) == "failed"
    override = aq.Retry(retries=2)
    assert judge(config, sent, override) is None
    apply_override(sent, override)
    assert sent.max_attempts == 3
    apply_override(sent, aq.Retry(retries=None))
    assert sent.max_attempts == UNLIMITED
    apply_override(sent, aq.Retry())
    assert sent.max_attempts == UNLIMITED


# -- the soft time limit, delivered into a coroutine ---------------------------------------


async def test_a_coroutine_that_finishes_in_time_is_untouched_and_not_cancelled_later() -> None:
    async def quick() -> int:
        await asyncio.sleep(0)
        return 7

    assert await SoftLimited(quick(), 0.05) == 7
    await asyncio.sleep(0.1)  # past the deadline: a timer left armed would cancel this
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_the_soft_limit_arrives_where_the_coroutine_awaits_and_it_may_go_on() -> None:
    async def worker() -> list[str]:
        steps = []
        try:
            await asyncio.sleep(30)
        except aq.SoftTimeLimit as exc:
            steps.append(str(exc))
        await asyncio.sleep(0.01)  # a later await is not cancelled again
        steps.append("went on")
        return steps

    assert await SoftLimited(worker(), 0.02) == ["soft time limit of 0.02 s exceeded", "went on"]


async def test_the_soft_limit_reaches_a_task_waiting_on_a_gather() -> None:
    inner: list[type[BaseException]] = []

    async def child() -> None:
        try:
            await asyncio.sleep(30)
        except BaseException as exc:
            inner.append(type(exc))
            raise

    async def parent() -> str:
        try:
            await asyncio.gather(child(), child())
        except aq.SoftTimeLimit:
            return "stopped"
        return "finished"

    assert await SoftLimited(parent(), 0.02) == "stopped"
    assert inner == [asyncio.CancelledError, asyncio.CancelledError]


async def test_a_cancel_arriving_with_the_soft_limit_stays_a_cancel() -> None:
    seen: list[type[BaseException]] = []

    async def body() -> None:
        me = asyncio.current_task()
        assert me is not None
        asyncio.get_running_loop().call_soon(me.cancel)  # in the same turn as the soft timer
        try:
            await asyncio.sleep(30)
        except BaseException as exc:
            seen.append(type(exc))
            raise

    async def run() -> None:
        await SoftLimited(body(), 0)

    task = asyncio.create_task(run())
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == [asyncio.CancelledError]


def test_soft_time_limit_is_an_exception_and_takes_a_cancellations_place() -> None:
    assert issubclass(aq.SoftTimeLimit, Exception)
    assert issubclass(aq.SoftTimeLimit, asyncio.CancelledError)


async def test_a_soft_limit_while_waiting_for_a_semaphore_leaves_it_whole() -> None:
    semaphore = asyncio.Semaphore(1)
    await semaphore.acquire()  # held by someone else

    async def waiter() -> str:
        try:
            async with semaphore:
                return "acquired"
        except aq.SoftTimeLimit:
            return "gave up"

    async def limited() -> str:
        return await SoftLimited(waiter(), 0.05)

    waiting = asyncio.create_task(limited())
    await asyncio.sleep(0)  # it waits in acquire(), its soft timer armed
    asyncio.get_running_loop().call_later(0.04, semaphore.release)
    time.sleep(0.1)  # noqa: ASYNC251  # the release and the soft limit fall due in one loop turn
    assert await waiting == "gave up"
    async with asyncio.timeout(1):  # the permit it was handed is not lost
        async with semaphore:
            pass


async def test_a_soft_limit_cancels_what_wait_for_and_a_task_group_started() -> None:
    outcomes: list[str] = []

    async def child(name: str) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            outcomes.append(f"{name} cancelled")
            raise

    async def with_wait_for() -> str:
        try:
            await asyncio.wait_for(child("wait_for"), 30)
        except aq.SoftTimeLimit:
            return "stopped"
        return "finished"

    async def with_task_group() -> str:
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(child("group"))
        except aq.SoftTimeLimit:
            return "stopped"
        return "finished"

    assert await SoftLimited(with_wait_for(), 0.02) == "stopped"
    assert await SoftLimited(with_task_group(), 0.02) == "stopped"
    assert outcomes == ["wait_for cancelled", "group cancelled"]
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_the_hard_limit_cuts_short_a_task_that_ignores_the_soft_one() -> None:
    async def stubborn() -> None:
        with contextlib.suppress(aq.SoftTimeLimit):
            await asyncio.sleep(30)
        await asyncio.sleep(30)

    with pytest.raises(aq.TaskTimeout, match=r"ran longer than 0\.1 s"):
        await run_with_deadline("id", SoftLimited(stubborn(), 0.02), 0.1)


# -- aq worker's defaults --------------------------------------------------------------


async def test_a_default_timeout_that_would_cut_a_soft_limit_short_is_refused() -> None:
    broker = aq.Broker("memory://")

    @broker.task(soft_timeout=50)
    async def export() -> None: ...

    @broker.task(soft_timeout=50, timeout=60)  # its own timeout: the default does not apply
    async def own() -> None: ...

    worker = aq.Worker(broker, default_timeout=30)
    with pytest.raises(aq.ConfigurationError, match=r"soft_timeout=50 s, not shorter than"):
        await worker.start()
    async with broker, running_worker(broker, default_timeout=51):
        pass  # starts


@pytest.mark.parametrize(
    ("option", "value", "problem"),
    [
        ("--default-timeout", "0", "--default-timeout must be a positive number of seconds"),
        ("--default-retries", "-1", "--default-retries must be a non-negative int"),
        ("--default-rate-limit", "fast", "--default-rate-limit: invalid rate limit 'fast'"),
    ],
)
async def test_a_bad_default_exits_2_saying_what_to_change(
    option: str, value: str, problem: str
) -> None:
    result = await run_aq("worker", APP, option, value)
    assert result.code == 2, result.stderr
    assert problem in result.stderr
    assert "Traceback" not in result.stderr

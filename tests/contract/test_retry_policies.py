"""Retry policies, soft time limits and a worker's defaults, on every broker.

Which exceptions are retried (``retry_on``, ``dont_retry_on``), retries without
limit (``retries=None``), ``aq.Retry`` overriding the policy for one attempt,
``soft_timeout`` raising ``aq.SoftTimeLimit`` inside the task, and the worker's
``--default-timeout``, ``--default-retries`` and ``--default-rate-limit`` for the
tasks that set none.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

import aq
from aq.options import RateLimit
from aq.testing import running_worker


class Flaky(Exception):
    """An error a test task raises on purpose."""


async def dead_reasons(broker: aq.Broker) -> list[str]:
    return [d.reason for d in await broker.admin.dead_letters("default")]


async def fails(handle: aq.TaskHandle[Any]) -> aq.TaskFailed:
    with pytest.raises(aq.TaskFailed) as info:
        await handle.result(timeout=10)
    return info.value


async def test_retry_on_retries_what_it_names_and_fails_the_rest_at_once(
    broker: aq.Broker,
) -> None:
    runs: list[str] = []

    @broker.task(retries=3, retry_backoff=0.01, retry_on=(ConnectionError, TimeoutError))
    async def fetch(kind: str) -> str:
        runs.append(kind)
        if kind == "network" and runs.count(kind) < 3:
            raise ConnectionResetError("peer went away")  # a subclass of ConnectionError
        if kind == "bug":
            raise ValueError("bad input")
        return kind

    async with running_worker(broker) as worker:
        assert await (await fetch.kiq("network")).result(timeout=10) == "network"
        error = await fails(await fetch.kiq("bug"))
        await worker.wait_idle()
    assert runs.count("network") == 3
    assert runs.count("bug") == 1
    assert error.remote_type == "ValueError"
    assert await dead_reasons(broker) == [
        "failed without retry (retry_on does not name ValueError) after 1 attempt(s): "
        "ValueError: bad input"
    ]


async def test_dont_retry_on_fails_at_once_even_under_a_broader_retry_on(
    broker: aq.Broker,
) -> None:
    runs: list[str] = []

    @broker.task(
        retries=2, retry_backoff=0.01, retry_on=LookupError, dont_retry_on=(KeyError, Flaky)
    )
    async def look(kind: str) -> None:
        runs.append(kind)
        raise {"key": KeyError("k"), "index": IndexError("i"), "flaky": Flaky("f")}[kind]

    async with running_worker(broker) as worker:
        for kind in ("key", "index", "flaky"):
            await fails(await look.kiq(kind))
        await worker.wait_idle()
    assert (runs.count("key"), runs.count("index"), runs.count("flaky")) == (1, 3, 1)
    reasons = sorted(await dead_reasons(broker))
    assert reasons == [
        "failed after 3 attempt(s): IndexError: i",
        "failed without retry (dont_retry_on names Flaky) after 1 attempt(s): Flaky: f",
        "failed without retry (dont_retry_on names KeyError) after 1 attempt(s): KeyError: 'k'",
    ]


async def test_retries_none_retries_without_limit_with_backoff_capped(
    broker: aq.Broker,
) -> None:
    seen: list[tuple[int, int | None]] = []

    @broker.task(retries=None, retry_backoff=0.001, retry_backoff_max=0.01)
    async def stubborn() -> int:
        ctx = aq.context()
        seen.append((ctx.attempt, ctx.max_attempts))
        if ctx.attempt < 7:  # past where a doubling backoff of 1 ms passes the cap
            raise Flaky("not yet")
        return ctx.attempt

    async with running_worker(broker):
        assert await (await stubborn.kiq()).result(timeout=20) == 7
    assert seen == [(n, None) for n in range(1, 8)]
    assert await dead_reasons(broker) == []


async def test_raised_retry_overrides_the_policy_for_its_attempt(broker: aq.Broker) -> None:
    runs: list[str] = []

    @broker.task(retry_on=(ConnectionError,), retry_backoff=0.01)
    async def polite(kind: str) -> str:
        runs.append(kind)
        ctx = aq.context()
        if kind == "budget":  # the task has no retries; the raise gives it two in all
            raise aq.Retry(delay=0, retries=2, reason="try twice more")
        if kind == "unlimited" and ctx.attempt < 5:
            raise aq.Retry(delay=0, retries=None)
        if kind == "kept":  # no retries= given: the task's own budget (none) applies
            raise aq.Retry(delay=0)
        return f"{kind} {ctx.attempt}/{ctx.max_attempts}"

    async with running_worker(broker) as worker:
        error = await fails(await polite.kiq("budget"))
        assert await (await polite.kiq("unlimited")).result(timeout=10) == "unlimited 5/None"
        await fails(await polite.kiq("kept"))
        await worker.wait_idle()
    assert error.remote_type == "aq.errors.Retry"
    assert (runs.count("budget"), runs.count("unlimited"), runs.count("kept")) == (3, 5, 1)
    assert sorted(await dead_reasons(broker)) == [
        "failed after 1 attempt(s): Retry: retry requested",
        "failed after 3 attempt(s): Retry: try twice more",
    ]


async def test_soft_time_limit_is_raised_inside_the_task_which_can_clean_up(
    broker: aq.Broker,
) -> None:
    cleaned: list[str] = []

    async def wait_for_rows() -> None:
        try:
            await asyncio.Event().wait()
        except aq.SoftTimeLimit:
            cleaned.append("inner")  # raised at the await where the task stood
            raise

    @broker.task(soft_timeout=0.1, timeout=10)
    async def export() -> str:
        try:
            await wait_for_rows()
        except aq.SoftTimeLimit as exc:
            cleaned.append("outer")
            return f"partial: {exc}"
        return "complete"

    async with running_worker(broker):
        result = await (await export.kiq()).result(timeout=10)
    assert result == "partial: soft time limit of 0.1 s exceeded"
    assert cleaned == ["inner", "outer"]


async def test_an_unhandled_soft_time_limit_fails_the_attempt_and_follows_the_policy(
    broker: aq.Broker,
) -> None:
    runs: list[int] = []

    @broker.task(soft_timeout=0.05, retries=1, retry_backoff=0.01)
    async def slow() -> None:
        runs.append(aq.context().attempt)
        await asyncio.sleep(30)

    @broker.task(soft_timeout=0.05, dont_retry_on=aq.SoftTimeLimit, retries=3)
    async def slow_once() -> None:
        await asyncio.sleep(30)

    async with running_worker(broker) as worker:
        error = await fails(await slow.kiq())
        once = await fails(await slow_once.kiq())
        await worker.wait_idle()
    assert runs == [1, 2]
    assert error.remote_type == once.remote_type == "aq.errors.SoftTimeLimit"
    assert any("dont_retry_on names SoftTimeLimit" in r for r in await dead_reasons(broker))


async def test_the_hard_timeout_still_stops_a_task_that_ignores_its_soft_limit(
    broker: aq.Broker,
) -> None:
    warned = asyncio.Event()

    @broker.task(soft_timeout=0.05, timeout=0.3)
    async def stubborn() -> None:
        try:
            await asyncio.sleep(30)
        except aq.SoftTimeLimit:
            warned.set()
        await asyncio.sleep(30)  # keeps going: the hard limit cancels it

    async with running_worker(broker):
        with pytest.raises(aq.TaskTimeout):
            await (await stubborn.kiq()).result(timeout=10)
    assert warned.is_set()


async def test_a_cancel_before_the_soft_limit_is_a_cancel(broker: aq.Broker) -> None:
    started = asyncio.Event()
    seen: list[type[BaseException]] = []

    @broker.task(soft_timeout=20)
    async def waits() -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except BaseException as exc:
            seen.append(type(exc))
            raise

    async with running_worker(broker):
        handle = await waits.kiq()
        await started.wait()
        await handle.cancel()
        with pytest.raises(aq.TaskCancelled):
            await handle.result(timeout=10)
    assert seen == [asyncio.CancelledError]


async def test_a_streams_soft_limit_is_raised_in_the_generator_not_in_the_sending(
    broker: aq.Broker,
) -> None:
    seen: list[str] = []

    @broker.task(soft_timeout=0.3, timeout=10)
    async def rows(n: int) -> AsyncIterator[int]:
        try:
            for i in range(n):
                await asyncio.sleep(0)  # the limit arrives here, or at the yield
                yield i
        except aq.SoftTimeLimit:
            seen.append("caught")
            yield -1  # its last word
        finally:
            seen.append("finally")

    async with running_worker(broker):
        items = [item async for item in (await rows.kiq(10**9)).stream()]
    assert items[-1] == -1
    assert items[:-1] == list(range(len(items) - 1))  # every item before it, in order
    assert seen == ["caught", "finally"]


async def test_a_cancelled_error_the_task_raises_itself_is_an_ordinary_failure(
    broker: aq.Broker,
) -> None:
    @broker.task
    async def awaits_a_cancelled_future() -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.cancel()
        await future  # raises CancelledError, though nobody cancelled the task

    async with running_worker(broker) as worker:
        error = await fails(await awaits_a_cancelled_future.kiq())
        await worker.wait_idle()
    assert error.remote_type == "asyncio.exceptions.CancelledError"
    assert worker.interrupted_count == 0
    [reason] = await dead_reasons(broker)
    assert reason.startswith("failed after 1 attempt(s): CancelledError")


async def test_worker_defaults_apply_to_the_tasks_that_set_none(broker: aq.Broker) -> None:
    runs: list[str] = []

    @broker.task(retries=0)  # the default timeout applies; the default retries do not
    async def hangs() -> None:
        await asyncio.sleep(30)

    @broker.task(timeout=10)
    async def own_timeout() -> str:
        await asyncio.sleep(0.3)  # past the default, within its own
        return "done"

    @broker.task(retry_backoff=0.01)
    async def flaky() -> None:
        runs.append("default")
        raise Flaky("x")

    @broker.task(retries=0)
    async def never_retried() -> None:
        runs.append("own")
        raise Flaky("x")

    @broker.task(rate_limit="50/s")
    async def own_rate() -> None: ...

    async with running_worker(
        broker, default_timeout=0.1, default_retries=2, default_rate_limit="1000/m"
    ) as worker:
        with pytest.raises(aq.TaskTimeout):
            await (await hangs.kiq()).result(timeout=10)
        assert await (await own_timeout.kiq()).result(timeout=10) == "done"
        await fails(await flaky.kiq())
        await fails(await never_retried.kiq())
        await worker.wait_idle()
        assert worker.limits.rate(hangs) == RateLimit(1000, 60)
        assert worker.limits.rate(own_rate) == RateLimit(50, 1)
    assert (runs.count("default"), runs.count("own")) == (3, 1)


async def test_a_default_rate_limit_spaces_the_starts_of_each_task(broker: aq.Broker) -> None:
    starts: list[float] = []

    @broker.task
    async def tick() -> None:
        starts.append(asyncio.get_running_loop().time())

    async with running_worker(broker, default_rate_limit="2/s"):
        handles = [await tick.kiq() for _ in range(4)]
        for handle in handles:
            await handle.result(timeout=10)
    # A burst of two, then one start each half second.
    assert starts[3] - starts[0] >= 0.9

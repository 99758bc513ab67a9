"""Workflows on each broker (RabbitMQ keeps their joins in a Redis store): chains,
groups, chords, maps and callbacks give their results in order, run each step
once, stop at a failure naming the step, and stop every step when cancelled;
bad workflows fail at ``kiq()`` before anything is sent."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import pytest

import aq
from aq.testing import running_worker
from tests.conftest import broker_url

pytestmark = pytest.mark.timeout(60)


async def soon(event: asyncio.Event, timeout: float = 10) -> None:
    """Wait for ``event``, failing the test if it is not set within ``timeout``."""
    await asyncio.wait_for(event.wait(), timeout)


async def gather_stream(handle: aq.GroupHandle[Any], timeout: float = 10) -> list[Any]:
    """Every ``(index, value)`` pair ``handle.stream()`` yields, within ``timeout``."""
    async with asyncio.timeout(timeout):
        return [pair async for pair in handle.stream()]


def memory_broker(**options: Any) -> aq.Broker:
    return aq.Broker(broker_url("memory"), **options)


# -- chains -----------------------------------------------------------------------------


async def test_a_chain_passes_each_result_to_the_next_step(stored_broker: aq.Broker) -> None:
    calls: list[tuple[str, tuple[int, ...]]] = []

    @stored_broker.task(name="add")
    async def add(x: int, y: int) -> int:
        calls.append(("add", (x, y)))
        return x + y

    @stored_broker.task(name="mul")
    async def mul(x: int, y: int) -> int:
        calls.append(("mul", (x, y)))
        return x * y

    @stored_broker.task(name="dbl")
    async def dbl(x: int) -> int:
        calls.append(("dbl", (x,)))
        return 2 * x

    async with running_worker(stored_broker):
        handle = await aq.chain(add.s(1, 2), mul.s(10), dbl.s()).kiq()
        assert await handle.result(timeout=10) == 60
    assert calls == [("add", (1, 2)), ("mul", (3, 10)), ("dbl", (30,))]


async def test_an_immutable_step_ignores_the_previous_result(stored_broker: aq.Broker) -> None:
    calls: list[tuple[int, ...]] = []

    @stored_broker.task(name="add")
    async def add(x: int, y: int) -> int:
        calls.append((x, y))
        return x + y

    async with running_worker(stored_broker):
        handle = await aq.chain(add.s(1, 2), add.si(100, 200), add.s(1)).kiq()
        assert await handle.result(timeout=10) == 301
    assert calls == [(1, 2), (100, 200), (300, 1)]


# -- groups -----------------------------------------------------------------------------


async def test_a_group_of_a_thousand_gives_its_results_in_order(stored_broker: aq.Broker) -> None:
    @stored_broker.task(name="square")
    async def square(x: int) -> int:
        return x * x

    async with running_worker(stored_broker, concurrency=1000):
        handle = await aq.group(square.s(i) for i in range(1000)).kiq()
        assert isinstance(handle, aq.GroupHandle)
        assert handle.size == 1000
        assert await handle.result(timeout=30) == [i * i for i in range(1000)]

        streamed = await aq.group(square.s(i) for i in range(1000)).kiq()
        pairs = await gather_stream(streamed, timeout=30)
    assert len(pairs) == 1000
    assert sorted(index for index, _ in pairs) == list(range(1000))
    assert all(value == index * index for index, value in pairs)


# -- chords -----------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["list of 10,000", "map of 3,000"])
async def test_a_chord_runs_its_body_once_with_every_result(
    stored_broker: aq.Broker, header: str
) -> None:
    bodies: list[list[int]] = []

    @stored_broker.task(name="triple")
    async def triple(x: int) -> int:
        return 3 * x

    @stored_broker.task(name="collect")
    async def collect(values: list[int]) -> int:
        bodies.append(values)
        return len(values)

    size = 10_000 if header.startswith("list") else 3000
    members = (
        aq.group([triple.s(i) for i in range(size)])
        if header.startswith("list")
        else triple.map(iter(range(size)))  # sent lazily, its size learned at the end
    )
    async with running_worker(stored_broker, concurrency=1000) as worker:
        handle = await aq.chord(members, collect.s()).kiq()
        assert await handle.result(timeout=50) == size
        await worker.wait_idle()
    assert bodies == [[3 * i for i in range(size)]]


# -- nesting ----------------------------------------------------------------------------


async def test_each_member_of_a_group_after_a_group_gets_the_first_groups_list(
    stored_broker: aq.Broker,
) -> None:
    received: list[tuple[str, list[int]]] = []

    @stored_broker.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    @stored_broker.task(name="total")
    async def total(values: list[int]) -> int:
        received.append(("total", values))
        return sum(values)

    @stored_broker.task(name="count")
    async def count(values: list[int]) -> int:
        received.append(("count", values))
        return len(values)

    async with running_worker(stored_broker):
        handle = await aq.chain(
            aq.group(add.s(1, 1), add.s(2, 2), add.s(3, 3)), aq.group(total.s(), count.s())
        ).kiq()
        assert isinstance(handle, aq.GroupHandle)
        assert await handle.result(timeout=10) == [12, 3]
    assert sorted(received) == [("count", [2, 4, 6]), ("total", [2, 4, 6])]


async def test_a_group_inside_a_chain_gives_each_member_the_previous_result(
    stored_broker: aq.Broker,
) -> None:
    @stored_broker.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    @stored_broker.task(name="mul")
    async def mul(x: int, y: int) -> int:
        return x * y

    @stored_broker.task(name="total")
    async def total(values: list[int]) -> int:
        return sum(values)

    async with running_worker(stored_broker):
        handle = await aq.chain(add.s(1, 1), aq.group(mul.s(2), mul.s(3)), total.s()).kiq()
        assert await handle.result(timeout=10) == 10


async def test_a_group_of_chains_runs_each_chain_to_its_end(stored_broker: aq.Broker) -> None:
    @stored_broker.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    @stored_broker.task(name="dbl")
    async def dbl(x: int) -> int:
        return 2 * x

    async with running_worker(stored_broker):
        handle = await aq.group(
            aq.chain(add.s(1, 1), dbl.s()),
            aq.chain(add.s(2, 2), dbl.s(), dbl.s()),
            add.s(5, 5),
        ).kiq()
        assert await handle.result(timeout=10) == [4, 16, 10]


async def test_a_chord_inside_a_chain_takes_the_previous_result_and_gives_the_next(
    stored_broker: aq.Broker,
) -> None:
    bodies: list[list[int]] = []

    @stored_broker.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    @stored_broker.task(name="dbl")
    async def dbl(x: int) -> int:
        return 2 * x

    @stored_broker.task(name="total")
    async def total(values: list[int]) -> int:
        bodies.append(values)
        return sum(values)

    async with running_worker(stored_broker) as worker:
        handle = await aq.chain(
            dbl.s(1), aq.chord([add.s(10), add.s(20), add.s(30)], total.s()), dbl.s()
        ).kiq()
        assert await handle.result(timeout=10) == 2 * (12 + 22 + 32)
        await worker.wait_idle()
    assert bodies == [[12, 22, 32]]


async def test_a_group_of_groups_gives_a_list_of_lists(stored_broker: aq.Broker) -> None:
    @stored_broker.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    async with running_worker(stored_broker):
        handle = await aq.group(
            aq.group(add.s(1, 1), add.s(2, 2)), aq.group(add.s(3, 3)), add.s(4, 4)
        ).kiq()
        assert await handle.result(timeout=10) == [[2, 4], [6], 8]


# -- failures ---------------------------------------------------------------------------


async def test_a_step_failing_after_its_retries_stops_the_chain_naming_the_step(
    stored_broker: aq.Broker,
) -> None:
    attempts: list[int] = []
    later: list[int] = []

    @stored_broker.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    @stored_broker.task(name="boom", retries=2, retry_backoff=0.01)
    async def boom(x: int) -> int:
        attempts.append(x)
        raise ValueError(f"boom {x}")

    @stored_broker.task(name="after")
    async def after(x: int) -> int:
        later.append(x)
        return x

    async with running_worker(stored_broker) as worker:
        handle = await aq.chain(add.s(1, 2), boom.s(), after.s(), after.s()).kiq()
        with pytest.raises(aq.TaskFailed) as info:
            await handle.result(timeout=10)
        await worker.wait_idle()
    assert info.value.step == "chain step 2 (boom)"
    assert "chain step 2 (boom)" in str(info.value)
    assert info.value.task_id != handle.id  # the step's own id
    assert info.value.remote_type == "ValueError"
    assert info.value.remote_message == "boom 3"
    assert attempts == [3, 3, 3]
    assert later == []


async def test_a_failing_chord_member_fails_the_chord_and_its_body_never_runs(
    stored_broker: aq.Broker,
) -> None:
    bodies: list[list[int]] = []

    @stored_broker.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    @stored_broker.task(name="boom")
    async def boom(x: int) -> int:
        raise ValueError(f"boom {x}")

    @stored_broker.task(name="total")
    async def total(values: list[int]) -> int:
        bodies.append(values)
        return sum(values)

    async with running_worker(stored_broker) as worker:
        handle = await aq.chord([add.s(1, 1), boom.s(5), add.s(2, 2)], total.s()).kiq()
        with pytest.raises(aq.TaskFailed) as info:
            await handle.result(timeout=10)
        await worker.wait_idle()
    assert info.value.step == "chord member 2 (boom)"
    assert "chord member 2 (boom)" in str(info.value)
    assert info.value.remote_message == "boom 5"
    assert bodies == []


async def test_the_link_error_of_a_chords_body_runs_once_when_two_members_fail(
    stored_broker: aq.Broker,
) -> None:
    failures: list[aq.Failure] = []
    reported = asyncio.Event()
    bodies: list[list[int]] = []
    boomed = 0
    both_failed = asyncio.Event()

    @stored_broker.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    @stored_broker.task(name="boom")
    async def boom(x: int) -> int:
        nonlocal boomed
        boomed += 1
        if boomed == 2:
            both_failed.set()
        raise ValueError(f"boom {x}")

    @stored_broker.task(name="total")
    async def total(values: list[int]) -> int:
        bodies.append(values)
        return sum(values)

    @stored_broker.task(name="report")
    async def report(failure: aq.Failure) -> None:
        failures.append(failure)
        reported.set()

    body = total.s().options(link_error=report.s())
    async with running_worker(stored_broker) as worker:
        handle = await aq.chord([boom.s(1), add.s(1, 1), boom.s(2)], body).kiq()
        with pytest.raises(aq.TaskFailed) as info:
            await handle.result(timeout=10)
        await soon(reported)
        await soon(both_failed)
        await worker.wait_idle()
    assert info.value.step in ("chord member 1 (boom)", "chord member 3 (boom)")
    assert bodies == []
    [failure] = failures
    assert set(failure) == {"task_id", "task", "step", "type", "message", "traceback"}
    member = {"boom 1": "chord member 1 (boom)", "boom 2": "chord member 3 (boom)"}
    assert failure["step"] == member[failure["message"]]
    assert failure["task"] == "boom"
    assert failure["type"] == "ValueError"
    assert "ValueError" in failure["traceback"]


async def test_a_group_gives_partial_results_with_errors_in_place_or_raises(
    stored_broker: aq.Broker,
) -> None:
    @stored_broker.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    @stored_broker.task(name="boom")
    async def boom(x: int) -> int:
        raise ValueError(f"boom {x}")

    async with running_worker(stored_broker):
        partial = await aq.group(add.s(1, 1), boom.s(3), add.s(2, 2)).kiq()
        results = await partial.result(timeout=10, return_exceptions=True)

        failing = await aq.group(add.s(1, 1), boom.s(4), add.s(2, 2)).kiq()
        with pytest.raises(aq.TaskFailed) as info:
            await failing.result(timeout=10)
    first, error, third = results
    assert (first, third) == (2, 4)
    assert isinstance(error, aq.TaskFailed)
    assert error.step == "group member 2 (boom)"
    assert error.remote_message == "boom 3"
    assert info.value.step == "group member 2 (boom)"
    assert info.value.remote_message == "boom 4"


# -- cancelling -------------------------------------------------------------------------


async def test_cancelling_a_chain_stops_its_running_step_and_every_later_one(
    stored_broker: aq.Broker,
) -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    stopped: list[int] = []
    later: list[int] = []

    @stored_broker.task(name="block")
    async def block(x: int) -> int:
        started.set()
        try:
            await release.wait()
        except asyncio.CancelledError:
            stopped.append(x)
            raise
        return x

    @stored_broker.task(name="after")
    async def after(x: int) -> int:
        later.append(x)
        return x

    async with running_worker(stored_broker) as worker:
        handle = await aq.chain(block.s(1), after.s(), after.s()).kiq()
        await soon(started)
        await handle.cancel()
        try:
            with pytest.raises(aq.TaskCancelled) as info:
                await handle.result(timeout=10)
        finally:
            release.set()
        await worker.wait_idle()
    assert info.value.step == "chain step 1 (block)"
    assert stopped == [1]
    assert later == []


async def test_cancelling_a_group_stops_every_running_member(stored_broker: aq.Broker) -> None:
    release = asyncio.Event()
    all_started = asyncio.Event()
    started: list[int] = []
    stopped: list[int] = []

    @stored_broker.task(name="block")
    async def block(x: int) -> int:
        started.append(x)
        if len(started) == 10:
            all_started.set()
        try:
            await release.wait()
        except asyncio.CancelledError:
            stopped.append(x)
            raise
        return x

    async with running_worker(stored_broker) as worker:
        handle = await aq.group(block.s(i) for i in range(10)).kiq()
        await soon(all_started)
        await handle.cancel()
        try:
            results = await handle.result(timeout=10, return_exceptions=True)
        finally:
            release.set()
        await worker.wait_idle()
    assert all(isinstance(r, aq.TaskCancelled) for r in results), results
    assert sorted(stopped) == list(range(10))


# -- callbacks --------------------------------------------------------------------------


async def test_link_gets_the_result_and_link_error_gets_the_failure(
    stored_broker: aq.Broker,
) -> None:
    linked: list[tuple[int, str]] = []
    failures: list[aq.Failure] = []
    linked_once = asyncio.Event()
    failed_once = asyncio.Event()

    @stored_broker.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    @stored_broker.task(name="boom")
    async def boom(x: int) -> int:
        raise ValueError(f"boom {x}")

    @stored_broker.task(name="on_result")
    async def on_result(value: int, tag: str) -> None:
        linked.append((value, tag))
        linked_once.set()

    @stored_broker.task(name="on_failure")
    async def on_failure(failure: aq.Failure) -> None:
        failures.append(failure)
        failed_once.set()

    async with running_worker(stored_broker) as worker:
        ok = add.s(2, 3).options(link=on_result.s("ok"), link_error=on_failure.s())
        handle = await ok.kiq()
        assert await handle.result(timeout=10) == 5
        await soon(linked_once)

        bad = boom.s(7).options(link=on_result.s("bad"), link_error=on_failure.s())
        failed = await bad.kiq()
        with pytest.raises(aq.TaskFailed):
            await failed.result(timeout=10)
        await soon(failed_once)
        await worker.wait_idle()
    assert linked == [(5, "ok")]
    [failure] = failures
    assert failure["task_id"] == failed.id
    assert failure["task"] == "boom"
    assert failure["step"] == "the call (boom)"
    assert failure["type"] == "ValueError"
    assert failure["message"] == "boom 7"
    assert "boom 7" in failure["traceback"]


async def test_link_and_link_error_on_a_chain_step(stored_broker: aq.Broker) -> None:
    linked: list[int] = []
    failures: list[aq.Failure] = []
    done = asyncio.Event()

    @stored_broker.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    @stored_broker.task(name="boom")
    async def boom(x: int) -> int:
        raise ValueError(f"boom {x}")

    @stored_broker.task(name="on_result")
    async def on_result(value: int) -> None:
        linked.append(value)

    @stored_broker.task(name="on_failure")
    async def on_failure(failure: aq.Failure) -> None:
        failures.append(failure)
        done.set()

    async with running_worker(stored_broker) as worker:
        handle = await aq.chain(
            add.s(1, 2).options(link=on_result.s()),
            boom.s().options(link_error=on_failure.s()),
        ).kiq()
        with pytest.raises(aq.TaskFailed):
            await handle.result(timeout=10)
        await soon(done)
        await worker.wait_idle()
    assert linked == [3]
    [failure] = failures
    assert failure["step"] == "chain step 2 (boom)"
    assert failure["message"] == "boom 3"


# -- maps and bulk sends ----------------------------------------------------------------


async def test_map_over_a_generator_and_starmap(stored_broker: aq.Broker) -> None:
    @stored_broker.task(name="dbl")
    async def dbl(x: int) -> int:
        return 2 * x

    @stored_broker.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    def numbers() -> Iterator[int]:
        yield from range(500)

    async with running_worker(stored_broker, concurrency=500):
        mapped = await dbl.map(numbers()).kiq()
        assert await mapped.result(timeout=20) == [2 * i for i in range(500)]
        starred = await add.starmap((i, 10 * i) for i in range(300)).kiq()
        assert await starred.result(timeout=20) == [11 * i for i in range(300)]


async def test_chunks_of_a_hundred_thousand_give_one_list_per_chunk(
    stored_broker: aq.Broker,
) -> None:
    @stored_broker.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    async with running_worker(stored_broker):
        handle = await add.chunks(((i, i) for i in range(100_000)), 1000).kiq()
        chunks = await handle.result(timeout=30)
    assert len(chunks) == 100
    assert all(len(chunk) == 1000 for chunk in chunks)
    assert chunks[0][:3] == [0, 2, 4]
    assert chunks[57][321] == 2 * 57_321
    assert chunks[-1][-1] == 2 * 99_999
    assert [x for chunk in chunks for x in chunk] == [2 * i for i in range(100_000)]


async def test_chunks_keep_a_short_last_chunk(stored_broker: aq.Broker) -> None:
    @stored_broker.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    async with running_worker(stored_broker):
        handle = await add.chunks([(i, 1) for i in range(7)], 3).kiq()
        assert await handle.result(timeout=10) == [[1, 2, 3], [4, 5, 6], [7]]


async def test_kiq_many_sends_a_thousand_calls_each_with_its_handle(
    stored_broker: aq.Broker,
) -> None:
    @stored_broker.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    handles = await add.kiq_many(add.s(i, 1) for i in range(1000))
    assert len({h.id for h in handles}) == 1000
    async with running_worker(stored_broker, concurrency=1000):
        results = await asyncio.gather(*(h.result(timeout=30) for h in handles))
    assert results == [i + 1 for i in range(1000)]


# -- more of the same, on each broker -------------------------------------------------


async def test_a_chord_with_no_members_runs_its_body_with_an_empty_list(
    stored_broker: aq.Broker,
) -> None:
    @stored_broker.task(name="total")
    async def total(values: list[int]) -> int:
        return len(values) + 100

    async with running_worker(stored_broker):
        handle = await aq.chord([], total.s()).kiq()
        assert await handle.result(timeout=10) == 100


async def test_a_step_that_succeeds_on_a_retry_carries_the_chain_on_once(
    stored_broker: aq.Broker,
) -> None:
    attempts: list[int] = []
    later: list[int] = []

    @stored_broker.task(name="flaky", retries=2, retry_backoff=0.01)
    async def flaky(x: int) -> int:
        attempts.append(aq.context().attempt)
        if len(attempts) == 1:
            raise ValueError("first attempt fails")
        return x + 1

    @stored_broker.task(name="after")
    async def after(x: int) -> int:
        later.append(x)
        return 10 * x

    async with running_worker(stored_broker) as worker:
        handle = await aq.chain(flaky.s(1), after.s()).kiq()
        assert await handle.result(timeout=10) == 20
        await worker.wait_idle()
    assert attempts == [1, 2]
    assert later == [2]


async def test_a_failure_before_the_final_group_fails_its_result_and_stream(
    stored_broker: aq.Broker,
) -> None:
    members: list[int] = []

    @stored_broker.task(name="boom")
    async def boom(x: int) -> int:
        raise ValueError(f"boom {x}")

    @stored_broker.task(name="add")
    async def add(x: int, y: int) -> int:
        members.append(x)
        return x + y

    async with running_worker(stored_broker) as worker:
        handle = await aq.chain(boom.s(1), aq.group(add.s(1), add.s(2))).kiq()
        with pytest.raises(aq.TaskFailed) as info:
            await handle.result(timeout=10)
        streamed = await aq.chain(boom.s(2), aq.group(add.s(1), add.s(2))).kiq()
        assert isinstance(streamed, aq.GroupHandle)
        with pytest.raises(aq.TaskFailed) as stream_info:
            await gather_stream(streamed)
        await worker.wait_idle()
    assert info.value.step == "chain step 1 (boom)"
    assert stream_info.value.remote_message == "boom 2"
    assert members == []


async def test_a_failing_step_of_a_chain_in_a_group_is_named_in_its_place(
    stored_broker: aq.Broker,
) -> None:
    @stored_broker.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    @stored_broker.task(name="boom")
    async def boom(x: int) -> int:
        raise ValueError(f"boom {x}")

    async with running_worker(stored_broker):
        handle = await aq.group(
            add.s(1, 1), aq.chain(add.s(2, 2), boom.s()), aq.group(add.s(3, 3), boom.s(9))
        ).kiq()
        first, second, third = await handle.result(timeout=10, return_exceptions=True)
    assert first == 2
    assert isinstance(second, aq.TaskFailed)
    assert second.step == "group member 2, chain step 2 (boom)"
    assert second.remote_message == "boom 4"
    assert isinstance(third, aq.TaskFailed)
    assert third.step == "group member 3, group member 2 (boom)"


async def test_options_on_a_step_choose_its_queue_headers_and_timeout(
    stored_broker: aq.Broker,
) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []
    never = asyncio.Event()

    @stored_broker.task(name="add")
    async def add(x: int, y: int) -> int:
        ctx = aq.context()
        seen.append((ctx.queue, dict(ctx.headers)))
        return x + y

    @stored_broker.task(name="stuck")
    async def stuck(x: int) -> int:
        await never.wait()  # only the step's timeout ends it
        return x

    async with running_worker(stored_broker, queues=["default", "other"]):
        handle = await aq.chain(
            add.s(1, 2), add.s(10).options(queue="other", headers={"trace": "t-1"})
        ).kiq()
        assert await handle.result(timeout=10) == 13
        timing_out = await aq.chain(add.s(1, 1), stuck.s().options(timeout=0.2)).kiq()
        with pytest.raises(aq.TaskTimeout) as info:
            await timing_out.result(timeout=10)
    assert seen[:2] == [("default", {}), ("other", {"trace": "t-1"})]
    assert info.value.step == "chain step 2 (stuck)"


async def test_a_delayed_step_waits_its_delay_after_the_step_before(
    stored_broker: aq.Broker,
) -> None:
    ends: list[float] = []
    starts: list[float] = []

    @stored_broker.task(name="first")
    async def first(x: int) -> int:
        ends.append(time.monotonic())
        return x

    @stored_broker.task(name="second")
    async def second(x: int) -> int:
        starts.append(time.monotonic())
        return x + 1

    async with running_worker(stored_broker):
        handle = await aq.chain(first.s(1), second.s().options(delay=0.3)).kiq()
        assert await handle.result(timeout=10) == 2
    assert starts[0] - ends[0] >= 0.25  # 0.3 s, give or take the clocks


async def test_cancelling_a_chord_stops_its_members_and_its_body_never_runs(
    stored_broker: aq.Broker,
) -> None:
    release = asyncio.Event()
    all_started = asyncio.Event()
    started: list[int] = []
    bodies: list[list[int]] = []

    @stored_broker.task(name="block")
    async def block(x: int) -> int:
        started.append(x)
        if len(started) == 5:
            all_started.set()
        await release.wait()
        return x

    @stored_broker.task(name="total")
    async def total(values: list[int]) -> int:
        bodies.append(values)
        return sum(values)

    async with running_worker(stored_broker) as worker:
        handle = await aq.chord([block.s(i) for i in range(5)], total.s()).kiq()
        await soon(all_started)
        await handle.cancel()
        try:
            with pytest.raises(aq.TaskCancelled):
                await handle.result(timeout=10)
        finally:
            release.set()
        await worker.wait_idle()
    assert bodies == []


async def test_an_expired_step_fails_the_chain_with_task_expired(
    stored_broker: aq.Broker,
) -> None:
    later: list[int] = []

    @stored_broker.task(name="add")
    async def add(x: int, y: int) -> int:
        later.append(x)
        return x + y

    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    async with running_worker(stored_broker) as worker:
        handle = await aq.chain(add.s(1, 2).options(expires=past), add.s(1)).kiq()
        with pytest.raises(aq.TaskExpired) as info:
            await handle.result(timeout=10)
        await worker.wait_idle()
    assert info.value.step == "chain step 1 (add)"
    assert later == []


async def test_the_handle_of_a_chain_gets_the_progress_of_every_step(
    stored_broker: aq.Broker,
) -> None:
    @stored_broker.task(name="step")
    async def step(x: int) -> int:
        await aq.context().report_progress(x)
        return x + 1

    async with running_worker(stored_broker):
        handle = await aq.chain(step.s(1), step.s(), step.s()).kiq()
        async with asyncio.timeout(10):
            reports = [report async for report in handle.progress()]
        assert await handle.result(timeout=10) == 4
    assert reports == [1, 2, 3]


async def test_a_failing_callback_does_not_fail_the_workflow(stored_broker: aq.Broker) -> None:
    failed = asyncio.Event()

    @stored_broker.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    @stored_broker.task(name="broken")
    async def broken(x: int) -> None:
        failed.set()
        raise RuntimeError("callback fails")

    async with running_worker(stored_broker):
        handle = await aq.chain(add.s(1, 2).options(link=broken.s()), add.s(10)).kiq()
        assert await handle.result(timeout=10) == 13
        await soon(failed)


async def test_cancelling_a_workflow_cancels_its_running_callbacks(
    stored_broker: aq.Broker,
) -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    cancelled = asyncio.Event()
    stopped: list[int] = []

    @stored_broker.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    @stored_broker.task(name="slow_callback")
    async def slow_callback(x: int) -> None:
        started.set()
        try:
            await release.wait()
        except asyncio.CancelledError:
            stopped.append(x)
            cancelled.set()
            raise

    async with running_worker(stored_broker) as worker:
        handle = await add.s(1, 2).options(link=slow_callback.s()).kiq()
        assert await handle.result(timeout=10) == 3
        await soon(started)
        await handle.cancel()
        try:
            await soon(cancelled)
        finally:
            release.set()
        await worker.wait_idle()
    assert stopped == [3]


@pytest.mark.parametrize("broker", ["amqp"], indirect=True)
async def test_chains_groups_and_maps_need_no_store_on_rabbitmq(broker: aq.Broker) -> None:
    @broker.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    async with running_worker(broker):
        chained = await aq.chain(add.s(1, 2), add.s(3)).kiq()
        grouped = await aq.group(add.s(1, 1), aq.chain(add.s(2, 2), add.s(1))).kiq()
        mapped = await add.starmap([(1, 1), (2, 2)]).kiq()
        assert await chained.result(timeout=10) == 6
        assert await grouped.result(timeout=10) == [2, 5]
        assert await mapped.result(timeout=10) == [2, 4]


# -- found on the memory broker (the parts at fault are the same for every broker) ------


async def test_options_given_in_two_calls_are_both_kept() -> None:
    b = memory_broker()
    seen: list[tuple[str, dict[str, Any]]] = []
    linked = asyncio.Event()

    @b.task(name="where")
    async def where(x: int) -> int:
        ctx = aq.context()
        seen.append((ctx.queue, dict(ctx.headers)))
        return x

    @b.task(name="on_result")
    async def on_result(x: int) -> None:
        linked.set()

    sig = where.s(1).options(queue="other", headers={"k": "v"}).options(link=on_result.s())
    async with b, running_worker(b, queues=["default", "other"]):
        assert await (await sig.kiq()).result(timeout=10) == 1
        await soon(linked)
    assert seen == [("other", {"k": "v"})]


@dataclasses.dataclass
class Point:
    x: int


async def test_the_results_of_a_group_of_groups_are_converted_like_a_groups() -> None:
    b = memory_broker()

    @b.task(name="point")
    async def point(x: int) -> Point:
        return Point(x)

    async with b, running_worker(b):
        flat = await aq.group(point.s(1), point.s(2)).kiq()
        assert await flat.result(timeout=10) == [Point(1), Point(2)]
        nested = await aq.group(aq.group(point.s(1)), aq.group(point.s(2))).kiq()
        assert await nested.result(timeout=10) == [[Point(1)], [Point(2)]]


async def test_a_later_step_past_its_expiry_datetime_expires() -> None:
    b = memory_broker()
    release = asyncio.Event()
    later: list[int] = []

    @b.task(name="block")
    async def block(x: int) -> int:
        await release.wait()
        return x

    @b.task(name="after")
    async def after(x: int) -> int:
        later.append(x)
        return x

    expiry = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=0.3)
    async with b, running_worker(b):
        handle = await aq.chain(block.s(1), after.s().options(expires=expiry)).kiq()
        await asyncio.sleep(0.4)  # the expiry itself is what is tested
        release.set()
        with pytest.raises(aq.TaskExpired):
            await handle.result(timeout=10)
    assert later == []


async def test_a_next_message_over_max_message_size_fails_the_step_naming_both() -> None:
    b = memory_broker(max_message_size=4000)
    later: list[str] = []

    @b.task(name="big")
    async def big(n: int) -> str:
        return "x" * n

    @b.task(name="echo")
    async def echo(text: str) -> int:
        later.append(text)
        return len(text)

    async with b, running_worker(b) as worker:
        handle = await aq.chain(big.s(5000), echo.s()).kiq()
        with pytest.raises(aq.TaskFailed) as info:
            await handle.result(timeout=10)
        await worker.wait_idle()
    assert info.value.step == "chain step 1 (big)"
    assert info.value.remote_type == "aq.errors.SerializationError"
    assert "chain step 2 (echo)" in info.value.remote_message
    assert "max_message_size" in info.value.remote_message
    assert later == []


async def test_a_workflows_final_result_is_kept_with_result_ttl() -> None:
    b = memory_broker(result_ttl=60)

    @b.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    @b.task(name="total")
    async def total(values: list[int]) -> int:
        return sum(values)

    async with b, running_worker(b) as worker:
        chained = await aq.chain(add.s(1, 2), add.s(3)).kiq()
        chorded = await aq.chord([add.s(1, 1), add.s(2, 2)], total.s()).kiq()
        assert await chained.result(timeout=10) == 6
        assert await chorded.result(timeout=10) == 6
        await worker.wait_idle()
        assert await b.get_result(chained.id) == 6
        assert await b.get_result(chorded.id) == 6


async def test_a_workflow_ending_in_a_group_keeps_no_result_under_its_id() -> None:
    b = memory_broker(result_ttl=60)

    @b.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    async with b, running_worker(b) as worker:
        grouped = await aq.group(add.s(1, 1), add.s(2, 2)).kiq()
        assert await grouped.result(timeout=10) == [2, 4]
        await worker.wait_idle()
        with pytest.raises(aq.ResultNotFound):  # the list exists only in the handle
            await b.get_result(grouped.id)


# -- bad input, found before anything is sent ------------------------------------------


def test_a_signature_whose_arguments_do_not_fit_fails_when_built() -> None:
    b = memory_broker()

    @b.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    with pytest.raises(aq.ConfigurationError, match="does not fit"):
        add.s(1, 2, 3)  # type: ignore[call-overload]
    with pytest.raises(aq.ConfigurationError, match="does not fit"):
        add.si(1)  # type: ignore[call-arg]


async def test_a_step_given_too_many_arguments_fails_at_kiq_suggesting_si() -> None:
    b = memory_broker()
    calls: list[tuple[int, int]] = []

    @b.task(name="add")
    async def add(x: int, y: int) -> int:
        calls.append((x, y))
        return x + y

    steps: list[aq.Canvas[Any, Any]] = [add.s(1, 2), add.s(1, 2)]  # mypy would refuse it
    async with b:
        with pytest.raises(aq.ConfigurationError, match=r"chain step 2.*\.si\(") as info:
            await aq.chain(*steps).kiq()
        assert "add.s(1, 2)" in str(info.value)
        async with running_worker(b) as worker:  # nothing was sent
            await worker.wait_idle()
    assert calls == []


async def test_a_workflow_over_max_message_size_fails_at_kiq_naming_the_step() -> None:
    b = memory_broker(max_message_size=4000)
    calls: list[str] = []

    @b.task(name="echo")
    async def echo(text: str) -> str:
        calls.append(text)
        return text

    async with b:
        with pytest.raises(aq.SerializationError, match=r"group member 2 \(echo\)"):
            await aq.group(echo.s("small"), echo.s("x" * 5000), echo.s("small")).kiq()
        with pytest.raises(aq.SerializationError, match=r"chain step 1 \(echo\)"):
            await aq.chain(echo.s("x" * 5000), echo.s()).kiq()
        async with running_worker(b) as worker:  # nothing was sent
            await worker.wait_idle()
    assert calls == []


async def test_an_unencodable_argument_fails_at_kiq_naming_the_step() -> None:
    b = memory_broker()

    @b.task(name="add")
    async def add(x: int, y: Any) -> int:
        return x

    async with b:
        with pytest.raises(aq.SerializationError, match=r"chain step 2 \(add\).*cannot be sent"):
            await aq.chain(add.s(1, 2), add.s(object())).kiq()


async def test_an_unencodable_argument_after_the_previous_result_is_named_rightly() -> None:
    b = memory_broker()

    @b.task(name="add")
    async def add(x: int, y: Any) -> int:
        return x

    async with b:
        with pytest.raises(aq.SerializationError) as info:
            await aq.chain(add.s(1, 2), add.s(object())).kiq()
    assert "argument 'y' cannot be sent" in str(info.value)


async def test_a_signature_missing_its_first_argument_cannot_be_sent_alone() -> None:
    b = memory_broker()

    @b.task(name="dbl")
    async def dbl(x: int) -> int:
        return 2 * x

    async with b:
        with pytest.raises(aq.ConfigurationError, match="does not fit"):
            await dbl.s().kiq()


async def test_kiq_many_refuses_calls_it_cannot_send_and_sends_none() -> None:
    b = memory_broker()
    calls: list[int] = []

    @b.task(name="dbl")
    async def dbl(x: int) -> int:
        calls.append(x)
        return 2 * x

    @b.task(name="other")
    async def other(x: int) -> int:
        return x

    async with b:
        with pytest.raises(aq.ConfigurationError, match="does not fit"):
            await dbl.kiq_many([dbl.s(1), dbl.s()])
        with pytest.raises(aq.ConfigurationError, match=r"dbl\.s\(\.\.\.\)"):
            await dbl.kiq_many([dbl.s(1), other.s(2)])
        with pytest.raises(aq.ConfigurationError, match="link"):
            await dbl.kiq_many([dbl.s(1), dbl.s(2).options(link=other.s())])
        async with running_worker(b) as worker:  # nothing was sent
            await worker.wait_idle()
    assert calls == []


def test_chunks_of_no_items_each_are_refused() -> None:
    b = memory_broker()

    @b.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    with pytest.raises(aq.ConfigurationError, match="chunks"):
        add.chunks([(1, 1)], 0)


async def test_an_empty_map_gives_an_empty_list_at_once() -> None:
    b = memory_broker()

    @b.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    @b.task(name="dbl")
    async def dbl(x: int) -> int:
        return 2 * x

    async with b:  # no worker: nothing is sent
        assert await (await dbl.map([]).kiq()).result(timeout=1) == []
        assert await (await add.starmap([]).kiq()).result(timeout=1) == []
        assert await (await add.chunks([], 10).kiq()).result(timeout=1) == []


async def test_an_empty_group_gives_an_empty_list_at_once() -> None:
    b = memory_broker()

    @b.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    async with b:  # no worker: nothing is sent
        handle = await aq.group(add.s(i, i) for i in range(0)).kiq()
        assert await handle.result(timeout=1) == []


async def test_an_empty_group_at_the_end_of_a_chain_gives_an_empty_list() -> None:
    b = memory_broker()

    @b.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    async with b, running_worker(b):
        empty: aq.Group[int, int] = aq.group()
        handle = await aq.chain(add.s(1, 2), empty).kiq()
        assert await handle.result(timeout=10) == []


@pytest.mark.parametrize("shape", ["chord", "chord of a map", "group then a step"])
@pytest.mark.parametrize("broker", ["amqp"], indirect=True)
async def test_a_join_without_a_store_fails_at_kiq_naming_store(
    broker: aq.Broker, shape: str
) -> None:
    @broker.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    @broker.task(name="total")
    async def total(values: list[int]) -> int:
        return sum(values)

    canvas: aq.Canvas[Any, Any]
    if shape == "chord":
        canvas = aq.chord([add.s(1, 1), add.s(2, 2)], total.s())
    elif shape == "chord of a map":
        canvas = aq.chord(add.starmap([(1, 1), (2, 2)]), total.s())
    else:
        canvas = aq.chain(aq.group(add.s(1, 1), add.s(2, 2)), total.s())
    with pytest.raises(aq.ConfigurationError, match="store="):
        await canvas.kiq()

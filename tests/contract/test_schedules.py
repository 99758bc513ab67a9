"""Schedules fired by ``aq.Scheduler`` on each broker: one leader among schedulers,
one fire per due time, schedules added and removed at run time, missed fires.

RabbitMQ runs both alone (its single-active-consumer queue elects the leader)
and with a Redis store (which also keeps the schedules added at run time).
tests/reliability/test_scheduler_failover.py kills schedulers in other processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

import aq
from aq.scheduling.entry import fire_id
from aq.testing import running_worker
from tests.conftest import _delete_prefix, broker_url

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=["memory", "redis", "amqp", "amqp+redis"])
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[aq.Broker]:
    kind = str(request.param)
    store = broker_url("redis") if kind == "amqp+redis" else None
    b = aq.Broker(broker_url(kind.partition("+")[0]), store=store)
    try:
        async with b:
            yield b
            if kind.startswith("amqp"):
                transport: Any = b.transport
                await transport.purge_namespace()
                async with transport.context.raw_channel() as channel:
                    await channel.queue_delete(transport.context.names.election_queue("scheduler"))
    finally:
        for url in (b.url, store):
            if url is not None and url.startswith("redis"):
                await _delete_prefix(url)


class Fires:
    """Every run of a scheduled task: (task id, the due time its fire was for)."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, float]] = []
        self._arrived = asyncio.Event()

    def record(self) -> None:
        context = aq.context()
        self.runs.append((context.task_id, float(context.headers["aq-due"])))
        self._arrived.set()

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(20):
            while len(self.runs) < count:
                self._arrived.clear()
                await self._arrived.wait()


@contextlib.asynccontextmanager
async def scheduling(broker: aq.Broker, count: int = 1) -> AsyncIterator[list[aq.Scheduler]]:
    """``count`` schedulers running on ``broker`` in this process."""
    schedulers = [aq.Scheduler(broker, lease_time=1.0) for _ in range(count)]
    runs = [asyncio.create_task(s.run()) for s in schedulers]
    try:
        yield schedulers
    finally:
        for run in runs:
            run.cancel()
        await asyncio.gather(*runs, return_exceptions=True)


async def test_a_schedule_fires_once_per_due_time_with_its_id(broker: aq.Broker) -> None:
    fires = Fires()

    @broker.task(name="tick", schedule=aq.every(seconds=0.2))
    async def tick() -> None:
        fires.record()

    async with running_worker(broker), scheduling(broker):
        await fires.wait_for(4)
    dues = [due for _, due in fires.runs]
    assert dues == sorted(set(dues))
    assert all(b - a == pytest.approx(0.2) for a, b in itertools.pairwise(dues))
    assert [task_id for task_id, _ in fires.runs] == [fire_id("tick", due) for due in dues]


async def test_of_three_schedulers_one_leads_and_fires(broker: aq.Broker) -> None:
    fires = Fires()

    @broker.task(name="tick", schedule=aq.every(seconds=0.2))
    async def tick() -> None:
        fires.record()

    async with running_worker(broker), scheduling(broker, 3) as schedulers:
        await fires.wait_for(5)
        assert sum(s.leading for s in schedulers) == 1
    assert len({due for _, due in fires.runs}) == len(fires.runs)


async def test_another_scheduler_leads_when_the_leader_stops(broker: aq.Broker) -> None:
    fires = Fires()

    @broker.task(name="tick", schedule=aq.every(seconds=0.2))
    async def tick() -> None:
        fires.record()

    first = aq.Scheduler(broker, lease_time=1.0)
    first_run = asyncio.create_task(first.run())
    async with running_worker(broker):
        await fires.wait_for(2)
        async with scheduling(broker) as (second,):
            first_run.cancel()  # resigns: the other need not wait out a lease
            await asyncio.gather(first_run, return_exceptions=True)
            before = len(fires.runs)
            await fires.wait_for(before + 3)
            assert second.leading
    dues = [due for _, due in fires.runs]
    assert len(set(dues)) == len(dues)


async def test_a_schedule_passes_its_arguments(broker: aq.Broker) -> None:
    got: list[tuple[int, str]] = []
    done = asyncio.Event()

    @broker.task(name="remind")
    async def remind(user: int, *, text: str) -> None:
        got.append((user, text))
        done.set()

    broker.schedule(remind, aq.every(seconds=0.2), args=[7], kwargs={"text": "hi"}, name="r7")
    async with running_worker(broker), scheduling(broker):
        await asyncio.wait_for(done.wait(), 10)
    assert got[0] == (7, "hi")


async def test_schedules_added_at_run_time_fire_until_removed(broker: aq.Broker) -> None:
    if broker.store is None:
        with pytest.raises(aq.ConfigurationError, match="store="):
            await broker.add_schedule(
                broker.register(lambda: None, name="noop"), aq.every(seconds=1), name="n"
            )
        return
    fires = Fires()

    @broker.task(name="remind")
    async def remind(user: int) -> None:
        fires.record()

    async with running_worker(broker), scheduling(broker):
        await broker.add_schedule(remind, aq.every(seconds=0.2), args=[1], name="remind-1")
        await fires.wait_for(2)  # picked up without waiting for a reload
        assert [s.name for s in await broker.schedules.all()] == ["remind-1"]
        assert await broker.remove_schedule("remind-1") is True
        removed = time.time()
        await asyncio.sleep(0.6)  # three due times pass: none may fire
    assert all(due <= removed + 0.05 for _, due in fires.runs)
    assert await broker.remove_schedule("remind-1") is False


async def hourly_tick_that_missed_ten_fires(
    broker: aq.Broker, **options: Any
) -> tuple[Fires, float]:
    """An hourly schedule ``tick`` whose last fire the store records ten hours
    before its newest due time; the runs it gets, and that newest due time."""
    if broker.store is None:
        pytest.skip("without a store a scheduler has no record of missed fires")
    fires = Fires()

    async def record() -> None:
        fires.record()

    tick = broker.register(record, name="tick")
    spec = aq.every(hours=1)
    broker.schedule(tick, spec, name="tick", **options)
    newest = spec.previous_before(time.time())
    await broker.store.set("schedule-last:tick", repr(newest - 10 * 3600).encode(), ttl=60)
    return fires, newest


async def test_fires_missed_beyond_the_grace_are_skipped(broker: aq.Broker) -> None:
    fires, newest = await hourly_tick_that_missed_ten_fires(broker, grace=1.0)
    async with running_worker(broker), scheduling(broker) as (scheduler,):
        await asyncio.wait_for(scheduler.wait_leading(), 10)
        await asyncio.sleep(0.3)  # had a missed fire been sent, it would have run by now
    # Run on the hour, the next fire is due during the test, and is not a missed one.
    assert [due for _, due in fires.runs if due <= newest] == []


async def test_catch_up_sends_the_newest_missed_fires_and_no_more(broker: aq.Broker) -> None:
    fires, newest = await hourly_tick_that_missed_ten_fires(broker, catch_up=3)
    async with running_worker(broker), scheduling(broker):
        await fires.wait_for(3)
        await asyncio.sleep(0.3)  # a fourth would have run by now
    assert sorted(due for _, due in fires.runs) == [newest - 7200, newest - 3600, newest]


async def test_a_fire_claimed_by_a_scheduler_that_died_is_sent_once_the_claim_lapses(
    broker: aq.Broker,
) -> None:
    fires, newest = await hourly_tick_that_missed_ten_fires(broker, catch_up=1)
    assert broker.store is not None
    # A scheduler claimed the newest fire and died before it sent it.
    await broker.store.set(f"fired:{fire_id('tick', newest)}", b"ghost claimed", ttl=0.5)
    async with running_worker(broker), scheduling(broker):
        await fires.wait_for(1)
    assert fires.runs == [(fire_id("tick", newest), newest)]


async def test_a_schedule_added_again_under_its_name_is_replaced(broker: aq.Broker) -> None:
    if broker.store is None:
        pytest.skip("schedules added at run time live in the store")
    users: list[int] = []
    three_of_the_new = asyncio.Event()

    @broker.task(name="remind")
    async def remind(user: int) -> None:
        users.append(user)
        if users.count(2) == 3:
            three_of_the_new.set()

    async with running_worker(broker), scheduling(broker):
        await broker.add_schedule(remind, aq.every(seconds=0.2), args=[1], name="remind")
        await broker.add_schedule(remind, aq.every(seconds=0.2), args=[2], name="remind")
        await asyncio.wait_for(three_of_the_new.wait(), 10)
    assert set(users[users.index(2) :]) == {2}
    assert [s.args for s in await broker.schedules.stored()] == [(2,)]


async def test_a_paused_schedule_sends_nothing_until_resumed(broker: aq.Broker) -> None:
    if broker.store is None:
        pytest.skip("pausing a schedule is kept in the store")
    fires = Fires()

    @broker.task(name="tick", schedule=aq.every(seconds=0.2))
    async def tick() -> None:
        fires.record()

    async with running_worker(broker), scheduling(broker) as (scheduler,):
        await fires.wait_for(2)
        await broker.schedules.pause("tick")
        assert await broker.schedules.paused() == frozenset({"tick"})
        # A fire being sent when the pause was announced may still arrive: wait
        # until the scheduler has read the pause, then count.
        async with asyncio.timeout(5):
            while "tick" not in scheduler.paused:  # noqa: ASYNC110 - no event tells
                await asyncio.sleep(0.05)
        paused_at, count = time.time(), len(fires.runs)
        await asyncio.sleep(1.0)  # five due times pass while paused
        assert len(fires.runs) == count
        last = await broker.schedules.last_fire("tick")  # skipped fires count as handled,
        assert last is not None  # so no later leader sends them late
        assert last > paused_at + 0.5
        assert await broker.schedules.resume("tick")
        await fires.wait_for(count + 2)
    resumed = [due for _, due in fires.runs[count:]]
    assert all(due > paused_at + 1.0 for due in resumed)  # the paused fires are not sent late


async def test_pausing_an_unknown_schedule_says_so(broker: aq.Broker) -> None:
    if broker.store is None:
        with pytest.raises(aq.ConfigurationError, match="store"):
            await broker.schedules.pause("nothing")
        return
    with pytest.raises(aq.ConfigurationError, match="no schedule named 'nothing'"):
        await broker.schedules.pause("nothing")

"""Defining schedules: the checks made when a schedule is defined, the stored form of
schedules added at run time, fire ids, and jitter as the scheduler applies it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import aq
from aq.scheduling.entry import fire_id, schedule_from_json
from aq.scheduling.spec import jitter_for
from aq.testing import running_worker


@pytest.fixture
def broker() -> aq.Broker:
    return aq.Broker("memory://")


def test_a_schedule_missing_a_required_argument_fails_at_definition(broker: aq.Broker) -> None:
    @broker.task(name="remind")
    async def remind(user: int, *, text: str) -> None: ...

    with pytest.raises(
        aq.ConfigurationError,
        match=r"schedule 'r1' cannot call task 'remind'.*"
        r"missing a required argument: 'text'",
    ):
        broker.schedule(remind, aq.every(hours=1), args=[1], name="r1")
    with pytest.raises(aq.ConfigurationError, match="unexpected keyword argument 'colour'"):
        broker.schedule(remind, aq.every(hours=1), args=[1], kwargs={"text": "a", "colour": 1})


def test_a_task_schedule_on_a_task_that_needs_arguments_fails_at_decoration(
    broker: aq.Broker,
) -> None:
    with pytest.raises(aq.ConfigurationError, match="missing a required argument: 'user'"):

        @broker.task(schedule=aq.every(hours=1))
        async def remind(user: int) -> None: ...


def test_a_schedule_argument_that_cannot_be_sent_fails_at_definition(broker: aq.Broker) -> None:
    @broker.task(name="store")
    async def store(value: Any) -> None: ...

    with pytest.raises(aq.SerializationError, match="the arguments of schedule 'store'"):
        broker.schedule(store, aq.every(hours=1), args=[object()])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"catch_up": -1}, "catch_up must be an int from 0"),
        ({"catch_up": 10_001}, "catch_up must be an int from 0"),
        ({"grace": -5}, "grace must be 0 or more seconds"),
        ({"name": ""}, "a schedule's name must be a non-empty string"),
    ],
)
def test_bad_schedule_options_fail_at_definition(
    broker: aq.Broker, options: dict[str, Any], message: str
) -> None:
    tick = broker.register(lambda: None, name="tick")
    with pytest.raises(aq.ConfigurationError, match=message):
        broker.schedule(tick, aq.every(hours=1), **options)


def test_something_that_is_not_a_schedule_is_refused(broker: aq.Broker) -> None:
    tick = broker.register(lambda: None, name="tick")
    with pytest.raises(aq.ConfigurationError, match=r"write aq.every\(seconds=30\)"):
        broker.schedule(tick, "*/5 * * * *")  # type: ignore[arg-type]


def test_two_schedules_may_not_share_a_name(broker: aq.Broker) -> None:
    tick = broker.register(lambda: None, name="tick")
    broker.schedule(tick, aq.every(hours=1))
    with pytest.raises(aq.ConfigurationError, match="a schedule named 'tick' is defined already"):
        broker.schedule(tick, aq.every(minutes=5))
    broker.schedule(tick, aq.every(minutes=5), name="tick-often")


async def test_a_schedule_added_at_run_time_reads_back_as_it_was_defined(
    broker: aq.Broker,
) -> None:
    remind = broker.register(lambda user, *, text="hi": None, name="remind")
    async with broker:
        added = await broker.add_schedule(
            remind,
            aq.cron("0 8 * * MON-FRI", tz="Europe/Paris", jitter=30),
            args=[7],
            kwargs={"text": "standup"},
            name="remind-7",
            catch_up=2,
            grace=5,
        )
        (stored,) = await broker.schedules.stored()
    assert stored == added
    assert stored.stored
    assert stored.added_at is not None


async def test_a_run_time_schedule_may_not_take_a_code_schedules_name(broker: aq.Broker) -> None:
    tick = broker.register(lambda: None, name="tick", schedule=aq.every(hours=1))
    async with broker:
        with pytest.raises(aq.ConfigurationError, match="schedule 'tick' is defined in code"):
            await broker.add_schedule(tick, aq.every(minutes=1), name="tick")


async def test_a_stored_schedule_that_cannot_be_read_is_skipped(broker: aq.Broker) -> None:
    remind = broker.register(lambda user: None, name="remind")
    async with broker:
        await broker.add_schedule(remind, aq.every(hours=1), args=[1], name="good")
        assert broker.store is not None
        await broker.store.add_member("schedules:all", "bad", ttl=60)
        await broker.store.set("schedule:bad", b'{"name": "bad"}', ttl=60)
        assert [s.name for s in await broker.schedules.stored()] == ["good"]


def test_a_stored_form_without_its_fields_is_refused() -> None:
    with pytest.raises(aq.ConfigurationError, match="not a stored schedule"):
        schedule_from_json({"name": "x", "spec": {"kind": "every", "seconds": 1.0}})


def test_a_fire_id_is_the_schedule_and_its_due_time_in_utc() -> None:
    assert fire_id("digest", 1_764_666_000.0) == "digest@2025-12-02T09:00:00.000Z"
    assert fire_id("tick", 1_764_666_000.25) == "tick@2025-12-02T09:00:00.250Z"


async def test_each_fire_is_delayed_by_its_own_jitter(broker: aq.Broker) -> None:
    late: list[tuple[float, float]] = []
    done = asyncio.Event()

    @broker.task(name="tick", schedule=aq.every(seconds=0.2, jitter=0.15))
    async def tick() -> None:
        due = float(aq.context().headers["aq-due"])
        late.append((time.time() - due, jitter_for("tick", due, 0.15)))
        if len(late) == 4:
            done.set()

    async with broker, running_worker(broker, scheduler=True):
        await asyncio.wait_for(done.wait(), 10)
    assert all(lateness >= offset for lateness, offset in late)
    assert len({round(offset, 6) for _, offset in late}) == 4  # each fire its own offset


async def test_a_schedule_added_again_owes_no_fires_from_before_it_was_added(
    broker: aq.Broker,
) -> None:
    ran: list[float] = []

    @broker.task(name="remind")
    async def remind(user: int) -> None:
        ran.append(float(aq.context().headers["aq-due"]))

    async with broker, running_worker(broker, scheduler=True) as worker:
        assert broker.store is not None  # a record left by an earlier schedule of that name
        await broker.store.set("schedule-last:r", repr(time.time() - 86400).encode(), ttl=60)
        await broker.add_schedule(remind, aq.every(hours=1), args=[1], catch_up=5, name="r")
        await asyncio.sleep(0.3)  # had it owed catch-up fires, they would have run by now
        assert worker.in_flight == 0
    assert ran == []


async def test_a_scheduler_rides_out_a_store_it_cannot_read(
    broker: aq.Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    done = asyncio.Event()
    book = broker.schedules
    real_stored = book.stored
    failures = [aq.BrokerUnavailable("the store is down")]

    async def flaky() -> list[aq.Schedule]:
        if failures:
            raise failures.pop()
        return await real_stored()

    monkeypatch.setattr(book, "stored", flaky)

    @broker.task(name="tick", schedule=aq.every(seconds=0.2))
    async def tick() -> None:
        done.set()

    async with broker, running_worker(broker, scheduler=True):
        await asyncio.wait_for(done.wait(), 10)
    assert failures == []

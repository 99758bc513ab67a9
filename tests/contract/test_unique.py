"""Unique tasks on each broker (RabbitMQ keeps the keys in a Redis store): one task
per key while it is queued or running, every caller's handle gets its result,
and the key frees when the task ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

import aq
from aq.testing import running_worker
from tests.conftest import broker_url, twin

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def broker(stored_broker: aq.Broker) -> aq.Broker:
    """Each broker, with a store (on RabbitMQ, in Redis)."""
    return stored_broker


async def test_fifty_callers_of_one_key_share_one_run_and_its_result(broker: aq.Broker) -> None:
    other = twin(broker)  # a second producer: its callers join across processes
    runs: list[int] = []
    release = asyncio.Event()

    @broker.task(name="report", unique_for=60)
    async def report(n: int) -> int:
        runs.append(n)
        await release.wait()
        return n * 10

    @other.task(name="report", unique_for=60)
    async def report_elsewhere(n: int) -> int:
        raise NotImplementedError("runs in the worker")

    async with other, running_worker(broker):
        sends = [report.options(unique_key="report:42").kiq(i) for i in range(25)]
        sends += [report_elsewhere.options(unique_key="report:42").kiq(i) for i in range(25)]
        handles = await asyncio.gather(*sends)
        release.set()
        results = await asyncio.gather(*(h.result(timeout=10) for h in handles))
    assert len(runs) == 1
    assert {h.id for h in handles} == {handles[0].id}
    assert results == [runs[0] * 10] * 50


async def test_the_key_frees_when_the_task_ends(broker: aq.Broker) -> None:
    @broker.task(unique_for=60)
    async def report(n: int) -> int:
        return n

    async with running_worker(broker):
        first = await report.kiq(1)
        assert await first.result(timeout=10) == 1
        second = await report.kiq(1)
        assert await second.result(timeout=10) == 1
    assert second.id != first.id


async def test_the_key_frees_when_the_task_fails_for_good(broker: aq.Broker) -> None:
    @broker.task(unique_for=60)
    async def report(n: int) -> int:
        raise ValueError(f"no report {n}")

    async with running_worker(broker):
        first = await report.kiq(1)
        with pytest.raises(aq.TaskFailed, match="no report 1"):
            await first.result(timeout=10)
        second = await report.kiq(1)
        with pytest.raises(aq.TaskFailed):
            await second.result(timeout=10)
    assert second.id != first.id
    assert len(await broker.admin.dead_letters("default")) == 2


async def test_by_default_the_key_is_the_task_and_its_arguments(broker: aq.Broker) -> None:
    @broker.task(unique_for=60)
    async def report(n: int, *, fmt: str = "pdf") -> str:
        return f"{n}.{fmt}"

    same = [await report.kiq(1, fmt="csv"), await report.kiq(1, fmt="csv")]
    different = [await report.kiq(2, fmt="csv"), await report.kiq(1)]
    assert same[0].id == same[1].id
    assert len({same[0].id, *(h.id for h in different)}) == 3
    async with running_worker(broker):
        assert await same[1].result(timeout=10) == "1.csv"


async def test_a_key_left_by_a_dead_worker_expires_after_unique_for(broker: aq.Broker) -> None:
    @broker.task
    async def report(n: int) -> int:
        return n

    once = report.options(unique_key="report:1", unique_for=0.3)
    first = await once.kiq(1)  # no worker runs it: as if its worker had died
    assert (await once.kiq(1)).id == first.id
    await asyncio.sleep(0.4)  # the expiry itself is what is tested
    assert (await once.kiq(1)).id != first.id


def test_a_unique_key_without_unique_for_fails_at_options() -> None:
    broker = aq.Broker("memory://")

    @broker.task
    async def report(n: int) -> int:
        return n

    with pytest.raises(aq.ConfigurationError, match="unique_key needs unique_for"):
        report.options(unique_key="report:1")


def test_a_unique_task_without_a_store_fails_at_definition() -> None:
    broker = aq.Broker(broker_url("amqp"))
    with pytest.raises(aq.ConfigurationError, match=r"unique_for .* store='redis://"):

        @broker.task(unique_for=60)
        async def report(n: int) -> int:
            return n


async def test_an_argument_that_cannot_be_sent_is_named_at_kiq(broker: aq.Broker) -> None:
    @broker.task(unique_for=60)
    async def report(n: object) -> None: ...

    with pytest.raises(aq.SerializationError, match="argument 'n' of task"):
        await report.kiq(object())


async def test_callers_that_joined_a_task_that_could_not_be_sent_get_the_error(
    broker: aq.Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = twin(broker)
    sending = asyncio.Event()
    fail = asyncio.Event()
    real_publish = broker.transport.publish

    async def stalled_then_refused(queue: str, body: bytes, **options: Any) -> None:
        if not sending.is_set():
            sending.set()
            await fail.wait()
            raise aq.BrokerUnavailable("the broker refused it")
        await real_publish(queue, body, **options)

    @broker.task(name="report", unique_for=60)
    async def report(n: int) -> int:
        return n

    @other.task(name="report", unique_for=60)
    async def report_elsewhere(n: int) -> int:
        raise NotImplementedError("runs in the worker")

    async with other:
        monkeypatch.setattr(broker.transport, "publish", stalled_then_refused)
        first = asyncio.create_task(report.kiq(1))
        await sending.wait()
        here, there = await report.kiq(1), await report_elsewhere.kiq(1)  # both join it
        fail.set()
        with pytest.raises(aq.BrokerUnavailable):
            await first
        for handle in (here, there):
            with pytest.raises(aq.TaskFailed, match="the broker refused it"):
                await handle.result(timeout=10)
        monkeypatch.setattr(broker.transport, "publish", real_publish)
        again = await report.kiq(1)  # the key was freed: a new task
    assert again.id != here.id


def test_an_async_generator_task_cannot_be_unique() -> None:
    broker = aq.Broker("memory://")
    with pytest.raises(aq.ConfigurationError, match=r"do(es)? not apply to async-generator"):

        @broker.task(unique_for=60)
        async def pages() -> AsyncIterator[int]:
            yield 1

    @broker.task
    async def items() -> AsyncIterator[int]:
        yield 1

    with pytest.raises(aq.ConfigurationError, match=r"do(es)? not apply to async-generator"):
        items.options(unique_key="k", unique_for=5)

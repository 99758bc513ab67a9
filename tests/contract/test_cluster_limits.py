"""Limits shared by every worker: ``global_rate_limit``, ``global_max_concurrency``
and ``limit_key``, on each broker (RabbitMQ keeps their state in a Redis store).

Two workers in one process stand for two machines here: they share nothing but
the broker and its store. tests/reliability/test_cluster_limits.py runs the
same limits across worker processes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack

import pytest

import aq
from aq.testing import running_worker
from tests.conftest import broker_url

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def broker(stored_broker: aq.Broker) -> aq.Broker:
    """Each broker, with a store (on RabbitMQ, in Redis)."""
    return stored_broker


class Ledger:
    """When each run started and ended, by label."""

    def __init__(self, awaited: int = 0) -> None:
        self.starts: list[tuple[float, str]] = []
        self.running = 0
        self.most = 0
        self.awaited = awaited
        #: Set once ``awaited`` runs have started.
        self.reached = asyncio.Event()

    def started(self, label: str) -> None:
        self.starts.append((time.monotonic(), label))
        self.running += 1
        self.most = max(self.most, self.running)
        if len(self.starts) >= self.awaited:
            self.reached.set()

    def ended(self) -> None:
        self.running -= 1

    def times(self, label: str | None = None) -> list[float]:
        return [t for t, lab in self.starts if label is None or lab == label]


def most_in_any_window(times: list[float], seconds: float) -> int:
    """The most starts that fall within any span of ``seconds``."""
    times = sorted(times)
    most, first = 0, 0
    for last, t in enumerate(times):
        while t - times[first] > seconds:
            first += 1
        most = max(most, last - first + 1)
    return most


async def run_on_two_workers(broker: aq.Broker, send: Callable[[], AsyncIterator[None]]) -> None:
    """Run two workers on ``broker`` until everything ``send`` sent has finished."""
    async with AsyncExitStack() as stack:
        for _ in range(2):
            await stack.enter_async_context(running_worker(broker, concurrency=50))
        async for _ in send():
            pass


async def test_global_max_concurrency_holds_across_workers(broker: aq.Broker) -> None:
    ledger = Ledger()

    @broker.task(global_max_concurrency=2)
    async def hold(seconds: float) -> None:
        ledger.started("hold")
        await asyncio.sleep(seconds)
        ledger.ended()

    async def send() -> AsyncIterator[None]:
        handles = [await hold.kiq(0.3) for _ in range(8)]
        await asyncio.gather(*(h.result(timeout=30) for h in handles))
        yield

    await run_on_two_workers(broker, send)
    assert len(ledger.starts) == 8
    assert ledger.most == 2


async def test_tasks_waiting_for_a_global_slot_start_in_the_order_they_asked(
    broker: aq.Broker,
) -> None:
    ledger = Ledger()

    @broker.task(global_max_concurrency=1)
    async def hold(label: str) -> None:
        ledger.started(label)
        await asyncio.sleep(0.3)  # longer than a worker waits: the others go back in line
        ledger.ended()

    async def send() -> AsyncIterator[None]:
        handles = []
        for label in "abcde":
            handles.append(await hold.kiq(label))
            await asyncio.sleep(0.05)  # each asks before the next is sent
        await asyncio.gather(*(h.result(timeout=30) for h in handles))
        yield

    await run_on_two_workers(broker, send)
    assert [label for _, label in ledger.starts] == list("abcde")
    assert ledger.most == 1


async def test_global_rate_limit_spaces_starts_across_workers(broker: aq.Broker) -> None:
    ledger = Ledger()

    @broker.task(global_rate_limit="10/s")
    async def paced() -> None:
        ledger.started("paced")
        ledger.ended()

    async def send() -> AsyncIterator[None]:
        # 10 go at once (the burst); the next 5 places lie within the half second a
        # worker waits itself, and the last 10 are sent back to the broker due at
        # the places they were given.
        handles = [await paced.kiq() for _ in range(25)]
        await asyncio.gather(*(h.result(timeout=30) for h in handles))
        yield

    began = time.monotonic()
    await run_on_two_workers(broker, send)
    times = ledger.times()
    assert len(times) == 25
    assert time.monotonic() - began >= 1.4  # 15 starts beyond the burst, 10 a second
    assert most_in_any_window(times, 0.5) <= 10 + 5 + 1  # the burst and half a second


async def test_a_limit_key_gives_each_key_its_own_rate(broker: aq.Broker) -> None:
    ledger = Ledger(awaited=8)

    @broker.task(global_rate_limit="4/m", limit_key=lambda customer: customer)
    async def bill(customer: str) -> None:
        ledger.started(customer)
        ledger.ended()

    async def send() -> AsyncIterator[None]:
        for customer in ["a"] * 6 + ["b"] * 6:
            await bill.kiq(customer)
        # Each key's burst of 4 runs now; the rest of each waits fifteen seconds.
        await asyncio.wait_for(ledger.reached.wait(), 10)
        yield

    await run_on_two_workers(broker, send)
    assert sorted(label for _, label in ledger.starts) == ["a"] * 4 + ["b"] * 4


async def test_a_limit_key_that_raises_dead_letters_only_that_message(broker: aq.Broker) -> None:
    def customer_of(customer: str) -> str:
        if customer == "bad":
            raise ValueError("no such customer")
        return customer

    @broker.task(global_max_concurrency=5, limit_key=customer_of)
    async def bill(customer: str) -> str:
        return customer

    async def send() -> AsyncIterator[None]:
        bad, good = await bill.kiq("bad"), await bill.kiq("good")
        assert await good.result(timeout=10) == "good"
        with pytest.raises(aq.TaskFailed, match=r"limit_key of task .* raised ValueError"):
            await bad.result(timeout=10)
        yield

    await run_on_two_workers(broker, send)
    (dead,) = await broker.admin.dead_letters("default")
    assert "limit_key" in dead.reason
    assert "no such customer" in dead.reason


def test_a_global_limit_without_a_store_fails_at_definition() -> None:
    broker = aq.Broker(broker_url("amqp"))
    with pytest.raises(aq.ConfigurationError, match=r"global_rate_limit .* store='redis://"):

        @broker.task(global_rate_limit="10/s")
        async def paced() -> None: ...


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"global_rate_limit": "100/fortnight"}, "invalid rate limit '100/fortnight'"),
        ({"global_max_concurrency": 0}, "global_max_concurrency must be a positive int"),
        ({"global_rate_limit": "1/s", "limit_key": "customer"}, "limit_key must be a function"),
        ({"limit_key": lambda c: c}, "limit_key makes global_rate_limit"),
        ({"unique_for": -1}, "unique_for must be a positive number"),
    ],
)
def test_bad_cluster_options_fail_at_definition(options: dict[str, object], message: str) -> None:
    broker = aq.Broker("memory://")
    with pytest.raises(aq.ConfigurationError, match=message):
        broker.register(lambda customer: None, **options)  # type: ignore[arg-type]


async def test_a_task_waiting_for_a_global_slot_can_be_cancelled(broker: aq.Broker) -> None:
    release = asyncio.Event()
    ran: list[str] = []

    @broker.task(global_max_concurrency=1)
    async def hold(label: str) -> None:
        ran.append(label)
        await release.wait()

    async with running_worker(broker):
        first = await hold.kiq("first")
        waiting = await hold.kiq("waiting")
        await waiting.cancel()
        with pytest.raises(aq.TaskCancelled):
            await waiting.result(timeout=10)
        release.set()
        await first.result(timeout=10)
    assert ran == ["first"]


async def test_a_worker_takes_global_slots_only_for_tasks_its_own_limits_let_run(
    broker: aq.Broker,
) -> None:
    if broker.transport.in_process:
        pytest.skip("memory:// hands every message to the first worker with room")
    ledger = Ledger()

    @broker.task(global_max_concurrency=2, max_concurrency=1)
    async def hold() -> None:
        ledger.started("hold")
        await asyncio.sleep(0.2)
        ledger.ended()

    async def send() -> AsyncIterator[None]:
        handles = [await hold.kiq() for _ in range(6)]
        await asyncio.gather(*(h.result(timeout=30) for h in handles))
        yield

    await run_on_two_workers(broker, send)
    # Each worker runs one at a time, so both global slots are used, one per worker.
    assert ledger.most == 2

"""The task contract: aq's task-level behaviour, end to end, over one broker.

:class:`TaskContract` is a base class of pytest tests that send tasks through an
:class:`aq.Broker` and run them with a worker in the test's event loop
(:func:`aq.testing.running_worker`): results, remote errors, retries and dead
letters, delays, cancellation, streams, and messages naming unknown tasks. A
transport that passes :class:`~aq.testing.contract.TransportContract` should
pass these too; they check that the runtime's use of it holds together.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime, timedelta
from typing import ClassVar, TypeVar

import pytest

import aq
from aq.testing import running_worker
from aq.testing.contract.transport import wait_within

__all__ = ["TaskContract"]

T = TypeVar("T")


class TaskContract:
    """Task-level tests every broker must pass; subclass it as ``TestMyTasks``.

    The subclass provides a fixture ``broker``: an async fixture yielding a
    started :class:`aq.Broker` on a fresh namespace, with no tasks registered.
    """

    pytestmark = pytest.mark.asyncio

    #: Seconds any one wait (a result, a worker going idle) may take.
    timeout: ClassVar[float] = 10.0
    #: Seconds the delayed tasks wait.
    delay: ClassVar[float] = 0.2

    async def _within(self, awaitable: Awaitable[T]) -> T:
        return await wait_within(self.timeout, awaitable)

    async def test_a_result_is_pushed_back_to_the_producer(self, broker: aq.Broker) -> None:
        @broker.task
        async def add(x: int, y: int) -> int:
            return x + y

        async with running_worker(broker):
            handle = await add.kiq(2, 3)
            assert await handle.result(timeout=self.timeout) == 5
        assert handle.done

    async def test_kiq_returns_once_the_broker_has_the_message(self, broker: aq.Broker) -> None:
        @broker.task
        async def noop() -> None:
            return None

        await noop.kiq()
        stats = await broker.admin.stats(noop.config.queue)
        assert (stats.ready, stats.delayed) == (1, 0)

    async def test_a_raising_task_fails_with_the_remote_type_and_message(
        self, broker: aq.Broker
    ) -> None:
        @broker.task
        async def divide(x: int, y: int) -> float:
            return x / y

        async with running_worker(broker):
            handle = await divide.kiq(1, 0)
            with pytest.raises(aq.TaskFailed) as info:
                await handle.result(timeout=self.timeout)
        assert info.value.task_id == handle.id
        assert (info.value.remote_type, info.value.remote_message) == (
            "ZeroDivisionError",
            "division by zero",
        )
        assert "return x / y" in info.value.remote_traceback

    async def test_failed_attempts_are_retried_until_one_succeeds(self, broker: aq.Broker) -> None:
        attempts: list[int] = []

        @broker.task(retries=3, retry_backoff=0.01)
        async def flaky() -> str:
            attempts.append(aq.context().attempt)
            if len(attempts) < 3:
                raise ConnectionError("try again")
            return "ok"

        async with running_worker(broker):
            assert await (await flaky.kiq()).result(timeout=self.timeout) == "ok"
        assert attempts == [1, 2, 3]
        assert await broker.admin.dead_letters(flaky.config.queue) == []

    async def test_exhausted_retries_are_dead_lettered_with_the_reason(
        self, broker: aq.Broker
    ) -> None:
        attempts: list[int] = []

        @broker.task(retries=2, retry_backoff=0.01)
        async def always_fails() -> None:
            attempts.append(aq.context().attempt)
            raise ValueError("bad input")

        async with running_worker(broker):
            with pytest.raises(aq.TaskFailed, match="bad input"):
                await (await always_fails.kiq()).result(timeout=self.timeout)
        [dead] = await broker.admin.dead_letters(always_fails.config.queue)
        assert attempts == [1, 2, 3]
        assert dead.reason == "failed after 3 attempt(s): ValueError: bad input"
        message = broker.codec.open(dead.body, verify=False).value
        assert (message["task"], message["attempt"]) == (always_fails.name, 3)

    async def test_a_delayed_task_is_counted_as_delayed_until_due(self, broker: aq.Broker) -> None:
        @broker.task
        async def noop() -> None:
            return None

        await noop.options(delay=60).kiq()
        stats = await broker.admin.stats(noop.config.queue)
        assert (stats.ready, stats.delayed) == (0, 1)

    async def test_a_delayed_task_does_not_run_before_its_delay(self, broker: aq.Broker) -> None:
        @broker.task
        async def stamp() -> float:
            return time.time()

        async with running_worker(broker):
            sent = time.time()
            handle = await stamp.options(delay=self.delay).kiq()
            ran_at = await handle.result(timeout=self.timeout)
        assert ran_at - sent >= self.delay

    async def test_a_task_with_an_eta_does_not_run_before_it(self, broker: aq.Broker) -> None:
        @broker.task
        async def stamp() -> float:
            return time.time()

        eta = datetime.now(UTC) + timedelta(seconds=self.delay)
        async with running_worker(broker):
            ran_at = await (await stamp.options(eta=eta).kiq()).result(timeout=self.timeout)
        assert ran_at >= eta.timestamp()

    async def test_a_cancelled_running_task_stops(self, broker: aq.Broker) -> None:
        started = asyncio.Event()
        cancelled = asyncio.Event()

        @broker.task
        async def forever() -> None:
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise

        async with running_worker(broker) as worker:
            handle = await forever.kiq()
            await self._within(started.wait())
            await handle.cancel()
            with pytest.raises(aq.TaskCancelled):
                await handle.result(timeout=self.timeout)
            await self._within(worker.wait_idle())
        assert cancelled.is_set()
        assert await broker.admin.dead_letters(forever.config.queue) == []

    async def test_a_cancelled_queued_task_never_runs(self, broker: aq.Broker) -> None:
        blocker_started = asyncio.Event()
        release = asyncio.Event()
        ran: list[str] = []

        @broker.task
        async def blocker() -> None:
            blocker_started.set()
            await release.wait()

        @broker.task
        async def victim() -> None:
            ran.append("victim")

        async with running_worker(broker, concurrency=1) as worker:
            await blocker.kiq()
            await self._within(blocker_started.wait())
            handle = await victim.kiq()  # queued behind the blocker
            await handle.cancel()
            release.set()
            with pytest.raises(aq.TaskCancelled, match="before it started"):
                await handle.result(timeout=self.timeout)
            await self._within(worker.wait_idle())
        assert ran == []

    async def test_a_stream_task_yields_its_items_in_order(self, broker: aq.Broker) -> None:
        @broker.task
        async def count(n: int) -> AsyncIterator[int]:
            for i in range(n):
                yield i

        async def received(handle: aq.StreamHandle[int]) -> list[int]:
            return [i async for i in handle.stream()]

        async with running_worker(broker):
            handle = await count.kiq(50)
            assert await self._within(received(handle)) == list(range(50))
            await handle.result(timeout=self.timeout)  # a stream's outcome is its end

    async def test_an_unknown_task_is_dead_lettered_and_the_producer_told(
        self, broker: aq.Broker
    ) -> None:
        @broker.task(name="not.registered.here")
        async def ghost() -> None:
            return None

        handle = await ghost.kiq()
        del broker.tasks[ghost.name]  # the producer knew the task; the worker does not
        async with running_worker(broker):
            with pytest.raises(aq.TaskFailed) as info:
                await handle.result(timeout=self.timeout)
        assert info.value.remote_type == "aq.errors.UnknownTask"
        reasons = [d.reason for d in await broker.admin.dead_letters(broker.default_queue)]
        assert reasons == ["unknown task: 'not.registered.here'"]

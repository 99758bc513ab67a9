"""Messages that share a task id: a cancel reaches every one still running."""

from __future__ import annotations

import asyncio

import aq
from aq.testing import running_worker


async def test_a_cancel_reaches_a_twin_still_running_after_the_other_finished(
    broker: aq.Broker,
) -> None:
    started = {"quick": asyncio.Event(), "slow": asyncio.Event()}
    release_quick = asyncio.Event()
    slow_cancelled = asyncio.Event()

    @broker.task
    async def twin(which: str) -> str:
        started[which].set()
        if which == "quick":
            await release_quick.wait()
            return which
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            slow_cancelled.set()
            raise
        return which

    async with running_worker(broker) as worker:
        first = await twin.options(task_id="twin-1").kiq("quick")
        await twin.options(task_id="twin-1").kiq("slow")
        await asyncio.gather(started["quick"].wait(), started["slow"].wait())
        release_quick.set()
        assert await first.result(timeout=5) == "quick"  # the quick one is done and settled
        await broker.cancel("twin-1")
        async with asyncio.timeout(5):
            await slow_cancelled.wait()
        await worker.wait_idle()
    assert await broker.admin.dead_letters("default") == []

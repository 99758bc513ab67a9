"""Cancellation reaches a task wherever it is: running, or still queued."""

from __future__ import annotations

import asyncio
import logging

import pytest

import aq
from aq.testing import running_worker


async def test_broker_cancel_by_id_works_without_the_handle(broker: aq.Broker) -> None:
    started = asyncio.Event()

    @broker.task
    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    async with running_worker(broker):
        handle = await forever.options(task_id="job-42").kiq()
        await started.wait()
        await broker.cancel("job-42")
        with pytest.raises(aq.TaskCancelled):
            await handle.result(timeout=5)


async def test_cancelling_a_finished_task_changes_nothing(broker: aq.Broker) -> None:
    @broker.task
    async def quick() -> int:
        return 7

    async with running_worker(broker):
        handle = await quick.kiq()
        assert await handle.result(timeout=5) == 7
        await handle.cancel()
        assert await handle.result(timeout=5) == 7


async def test_junk_on_the_control_channel_is_reported_once_each_and_cancels_still_work(
    broker: aq.Broker, caplog: pytest.LogCaptureFixture
) -> None:
    started = asyncio.Event()

    @broker.task
    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    caplog.set_level(logging.WARNING, logger="aq.worker")
    async with running_worker(broker):
        handle = await forever.kiq()
        await started.wait()
        for junk in (b"\xff not json", b"[1, 2]", b'{"v": 99, "op": "cancel"}'):
            await broker.transport.broadcast(junk)
        await handle.cancel()  # the listener lived through the junk
        with pytest.raises(aq.TaskCancelled):
            await handle.result(timeout=5)
    ignored = [r.getMessage() for r in caplog.records if "control.ignored" in r.getMessage()]
    assert ignored == [
        'control.ignored reason="not application/json"',
        'control.ignored reason="not a v1 control message"',
        'control.ignored reason="not a v1 control message"',
    ]

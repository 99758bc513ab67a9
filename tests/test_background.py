"""Background loops are restarted, and reported, when they raise."""

from __future__ import annotations

import asyncio
import logging

import pytest

from aq import background


async def test_a_loop_that_raises_is_reported_with_its_traceback_and_started_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="aq")
    runs = 0
    done = asyncio.Event()

    async def loop() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise ValueError("bad entry")
        done.set()
        await asyncio.Event().wait()  # runs on until cancelled

    task = background.start("aq-test-loop", loop)
    await done.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert runs == 2
    [record] = caplog.records
    assert record.getMessage().startswith("loop.restarted loop=aq-test-loop delay=0.1")
    assert "ValueError: bad entry" in record.getMessage()
    assert record.exc_info is not None
    assert record.exc_info[0] is ValueError


async def test_a_loop_that_returns_is_not_started_again() -> None:
    runs = 0

    async def loop() -> None:
        nonlocal runs
        runs += 1

    await background.keep_running("aq-test-loop", loop)
    assert runs == 1

"""The supervisor keeps every slot alive, even when a child cannot be started."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from aq.worker.supervisor import Supervisor
from tests.reliability.workers import awaiting_log

pytestmark = pytest.mark.slow

CHILD = ["worker", "tests.apps.basic:broker", "--supervised", "--log-level", "WARNING"]


async def test_a_child_that_cannot_be_started_is_tried_again_and_said_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    spawn = asyncio.create_subprocess_exec
    failures = [OSError(24, "Too many open files")]

    async def flaky(*args: Any, **kwargs: Any) -> asyncio.subprocess.Process:
        if failures:
            raise failures.pop()
        return await spawn(*args, **kwargs)

    monkeypatch.setattr(asyncio, "create_subprocess_exec", flaky)
    caplog.set_level(logging.INFO, logger="aq")
    supervisor = Supervisor(CHILD, 1, shutdown_timeout=2)
    with awaiting_log("supervisor.child_started") as started:
        running = asyncio.create_task(supervisor.run(handle_signals=False))
        async with asyncio.timeout(20):
            await started.wait()
    supervisor.stop()
    await running
    lines = [r.getMessage() for r in caplog.records if r.name == "aq.supervisor"]
    assert lines[1].startswith("supervisor.start_failed slot=0 error=")
    assert "Too many open files" in lines[1]
    assert lines[2].startswith("supervisor.child_started slot=0")

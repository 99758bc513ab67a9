"""The supervisor keeps every slot alive, even when a child cannot be started, and
gives up only on a start-up failure before any child was ready."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
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


EXITS = ["worker", "tests.apps.exits:broker", "--supervised", "--log-level", "WARNING"]


class _Matching(logging.Handler):
    """Sets ``seen`` when an ``aq`` log line matches ``pattern``."""

    def __init__(self, pattern: str) -> None:
        super().__init__()
        self.pattern = re.compile(pattern)
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.pattern.search(record.getMessage()):
            self.seen.set()


@contextlib.contextmanager
def awaiting_match(pattern: str) -> Iterator[asyncio.Event]:
    """An event set once this process logs (under ``aq``) a line matching ``pattern``."""
    handler = _Matching(pattern)
    logging.getLogger("aq").addHandler(handler)
    try:
        yield handler.seen
    finally:
        logging.getLogger("aq").removeHandler(handler)


async def test_a_startup_failure_before_any_child_was_ready_stops_the_supervisor(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    flag = tmp_path / "fail"
    flag.touch()
    monkeypatch.setenv("AQ_TEST_EXIT_FILE", str(flag))
    caplog.set_level(logging.INFO, logger="aq")
    supervisor = Supervisor(EXITS, 2, shutdown_timeout=2)
    async with asyncio.timeout(20):
        await supervisor.run(handle_signals=False)  # returns by itself
    assert supervisor.startup_failed
    assert supervisor.restarts == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "aq.supervisor"]
    failed = [line for line in lines if line.startswith("supervisor.startup_failed")]
    assert len(failed) == 1
    assert "code=4" in failed[0]
    assert "aq worker stops (exit status 4)" in failed[0]


async def test_a_startup_failure_after_a_child_was_ready_is_restarted_like_a_crash(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    flag = tmp_path / "fail"
    monkeypatch.setenv("AQ_TEST_EXIT_FILE", str(flag))
    caplog.set_level(logging.INFO, logger="aq")
    supervisor = Supervisor(EXITS, 1, shutdown_timeout=2)
    with awaiting_log("supervisor.child_started") as started:
        running = asyncio.create_task(supervisor.run(handle_signals=False))
        async with asyncio.timeout(20):
            await started.wait()
            await supervisor.children[0].pipe.ready.wait()
    flag.touch()
    with awaiting_match(r"^supervisor\.child_exited slot=0 .* code=4 .* consumed=False") as four:
        os.kill(supervisor.children[0].proc.pid, signal.SIGKILL)
        async with asyncio.timeout(20):
            await four.wait()
    flag.unlink()
    with awaiting_log("supervisor.child_started") as restarted:
        async with asyncio.timeout(20):
            await restarted.wait()  # after the back-off
            await supervisor.children[0].pipe.ready.wait()
    assert not supervisor.startup_failed
    assert not supervisor.stopping.is_set()
    supervisor.stop()
    await running

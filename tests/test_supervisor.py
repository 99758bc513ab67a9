"""The supervisor keeps every slot alive, even when a child cannot be started, and
gives up only on a worker's start-up failure before any worker was ready; each
slot has one child, whatever renew (``--reload``), retire_worker and the slot's
restarts do at once; and told to shut down, it stops once every worker has gone."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from aq.worker import children, slots
from aq.worker.children import Child
from aq.worker.supervisor import ISOLATION_SLOT, Supervisor
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


STEERED = ["worker", "tests.apps.steered:broker", "--supervised", "--log-level", "WARNING"]


class _Starts(logging.Handler):
    """Queues the pid of each child the supervisor starts, as it logs it."""

    def __init__(self) -> None:
        super().__init__()
        self.pids: asyncio.Queue[int] = asyncio.Queue()

    def emit(self, record: logging.LogRecord) -> None:
        found = re.match(r"supervisor\.child_started slot=\S+ pid=(\d+)", record.getMessage())
        if found:
            self.pids.put_nowait(int(found[1]))


@pytest.fixture
def steer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> Path:
    """The directory whose files steer tests.apps.steered's processes."""
    monkeypatch.setenv("AQ_TEST_STEER_DIR", str(tmp_path))
    caplog.set_level(logging.INFO, logger="aq")
    return tmp_path


@pytest.fixture
def started() -> Iterator[asyncio.Queue[int]]:
    """The pid of each child started, in order."""
    handler = _Starts()
    logging.getLogger("aq").addHandler(handler)
    try:
        yield handler.pids
    finally:
        logging.getLogger("aq").removeHandler(handler)


@contextlib.asynccontextmanager
async def _running(supervisor: Supervisor, steer: Path) -> AsyncIterator[asyncio.Task[None]]:
    """``supervisor`` running; stopped at the end, its children let go."""
    running = asyncio.create_task(supervisor.run(handle_signals=False))
    try:
        yield running
    finally:
        (steer / "open").touch()
        (steer / "stop").touch()
        supervisor.stop()
        await running


def _live(supervisor: Supervisor) -> list[int]:
    return [pid for pid, _ in supervisor.live_children()]


async def _ready(child: Child) -> None:
    async with asyncio.timeout(10):
        await child.pipe.ready.wait()


@pytest.mark.timeout(20)
async def test_a_child_renewed_while_its_predecessor_dies_unready_is_its_slots_only_child(
    steer: Path, started: asyncio.Queue[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(slots, "_BACKOFF_START", 30.0)  # the restart waits for renew
    (steer / "gated").touch()
    supervisor = Supervisor(STEERED, 1, shutdown_timeout=2)
    async with _running(supervisor, steer), asyncio.timeout(15):
        first = await started.get()
        renewing = asyncio.create_task(supervisor.renew(0))
        renewed = await started.get()
        with awaiting_match(rf"^supervisor\.child_exited slot=0 pid={first} ") as died:
            os.kill(first, signal.SIGKILL)  # before it was ready: the slot pauses
            await died.wait()
        (steer / f"go-{renewed}").touch()
        assert await renewing is None
        assert supervisor.children[0].proc.pid == renewed
        assert _live(supervisor) == [renewed]

        (steer / "open").touch()
        pattern = rf"^supervisor\.child_exited slot=0 pid={renewed} .* consumed=True"
        with awaiting_match(pattern) as seen:  # the slot follows the renewed child
            os.kill(renewed, signal.SIGKILL)
            await seen.wait()
        third = await started.get()
        await _ready(supervisor.children[0])
        assert _live(supervisor) == [third]
        assert started.empty()


@pytest.mark.timeout(20)
async def test_a_slot_retired_while_its_child_restarts_stops_that_child(
    steer: Path, started: asyncio.Queue[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    supervisor = Supervisor(STEERED, 1, shutdown_timeout=2)
    spawn = children.spawn
    spawned: list[Child] = []

    async def retiring_meanwhile(*args: Any) -> Child:
        if spawned:  # the restart: the autoscaler retires the slot meanwhile
            supervisor.retire_worker(0)
        spawned.append(await spawn(*args))
        return spawned[-1]

    monkeypatch.setattr(children, "spawn", retiring_meanwhile)
    async with _running(supervisor, steer), asyncio.timeout(15):
        first = await started.get()
        await _ready(supervisor.children[0])
        with awaiting_match(r"^supervisor\.child_retired slot=0 ") as retired:
            os.kill(first, signal.SIGKILL)
            await retired.wait()
        await started.get()  # the restart, stopped at once
        assert _live(supervisor) == []
        assert supervisor.worker_slots() == []


@pytest.mark.timeout(20)
async def test_a_retiring_slot_is_not_renewed(steer: Path, started: asyncio.Queue[int]) -> None:
    supervisor = Supervisor(STEERED, 1, shutdown_timeout=5)
    async with _running(supervisor, steer), asyncio.timeout(15):
        await started.get()
        await _ready(supervisor.children[0])
        (steer / "hold-stop").touch()  # it drains until the test lets it go
        supervisor.retire_worker(0)
        assert await supervisor.renew(0) is None
        assert started.empty()
        with awaiting_match(r"^supervisor\.child_retired slot=0 ") as retired:
            (steer / "stop").touch()
            await retired.wait()
        assert _live(supervisor) == []


@pytest.mark.timeout(20)
async def test_the_isolation_worker_is_renewed_by_stopping_it_before_its_successor_starts(
    steer: Path, started: asyncio.Queue[int]
) -> None:
    supervisor = Supervisor([], 0, shutdown_timeout=2, isolation_args=STEERED)
    async with _running(supervisor, steer), asyncio.timeout(15):
        await started.get()
        old = supervisor.children[ISOLATION_SLOT]
        await _ready(old)
        old_running_at_start: list[bool] = []

        class _Start(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                if record.getMessage().startswith("supervisor.child_started"):
                    old_running_at_start.append(old.running)

        handler = _Start()
        logging.getLogger("aq").addHandler(handler)
        try:
            assert await supervisor.renew(ISOLATION_SLOT) is None
        finally:
            logging.getLogger("aq").removeHandler(handler)
        new = supervisor.children[ISOLATION_SLOT]
        assert new is not old
        assert new.pipe.ready.is_set()
        assert old_running_at_start == [False]  # one isolation worker at a time
        assert _live(supervisor) == [new.proc.pid]
        assert supervisor.restarts == 0


@pytest.mark.timeout(20)
async def test_an_isolation_worker_that_exits_4_is_restarted_with_the_back_off(
    steer: Path, started: asyncio.Queue[int]
) -> None:
    (steer / "exit").write_text("4")
    supervisor = Supervisor([], 0, shutdown_timeout=2, isolation_args=STEERED)  # --no-supervise
    pattern = r"^supervisor\.child_exited slot=isolation .* code=4 .* consumed=False"
    with awaiting_match(pattern) as crashed:
        async with _running(supervisor, steer), asyncio.timeout(15):
            await crashed.wait()
            assert not supervisor.startup_failed
            (steer / "exit").unlink()
            await started.get()
            await started.get()  # after the back-off
            await _ready(supervisor.children[ISOLATION_SLOT])
            assert not supervisor.stopping.is_set()


@pytest.mark.timeout(20)
async def test_a_worker_failing_start_up_stops_the_supervisor_though_the_isolation_worker_was_ready(
    steer: Path, started: asyncio.Queue[int]
) -> None:
    (steer / "gated").touch()
    (steer / "fail").touch()
    supervisor = Supervisor(STEERED, 1, shutdown_timeout=2, isolation_args=CHILD)
    async with _running(supervisor, steer) as running, asyncio.timeout(15):
        await started.get()
        await started.get()
        await _ready(supervisor.children[ISOLATION_SLOT])
        (steer / f"go-{supervisor.children[0].proc.pid}").touch()
        await asyncio.shield(running)  # returns by itself
        assert supervisor.startup_failed


@pytest.mark.timeout(20)
async def test_no_worker_is_added_once_one_was_told_to_shut_down(
    steer: Path, started: asyncio.Queue[int]
) -> None:
    supervisor = Supervisor(STEERED, 2, shutdown_timeout=2)
    async with _running(supervisor, steer), asyncio.timeout(15):
        await started.get()
        await started.get()
        await _ready(supervisor.children[0])
        await _ready(supervisor.children[1])
        (steer / "exit").write_text("3")
        with awaiting_match(r"^supervisor\.child_shut_down slot=0 ") as told:
            os.kill(supervisor.children[0].proc.pid, signal.SIGKILL)  # restarts, exits 3
            await told.wait()
        with awaiting_log("supervisor.add_refused") as refused:
            assert supervisor.add_worker() is None
        assert refused.is_set()
        assert supervisor.worker_slots() == [1]
        assert not supervisor.stopping.is_set()


@pytest.mark.timeout(20)
async def test_told_to_shut_down_it_stops_once_a_slot_retired_meanwhile_is_gone(
    steer: Path, started: asyncio.Queue[int]
) -> None:
    supervisor = Supervisor(STEERED, 2, shutdown_timeout=10)
    async with _running(supervisor, steer) as running, asyncio.timeout(15):
        await started.get()
        await started.get()
        await _ready(supervisor.children[0])
        await _ready(supervisor.children[1])
        (steer / "hold-stop").touch()
        supervisor.retire_worker(1)  # scaled down: it drains until the test lets it go
        (steer / "exit").write_text("3")
        with awaiting_match(r"^supervisor\.child_shut_down slot=0 ") as told:
            os.kill(supervisor.children[0].proc.pid, signal.SIGKILL)  # restarts, exits 3
            await told.wait()
        assert not supervisor.stopping.is_set()
        (steer / "stop").touch()
        await asyncio.shield(running)  # returns by itself
        assert supervisor.shut_down

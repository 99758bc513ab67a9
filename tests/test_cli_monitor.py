"""The monitoring commands as a person uses them: aq status, inspect, control,
events, and aq top in a real terminal (tmux)."""

from __future__ import annotations

import asyncio
import shutil
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

import aq
from aq.cli import app
from aq.monitor.formats import event_line
from aq.monitor.wire import Event
from tests.reliability.test_monitoring_processes import _app_broker, _namespace, _workers

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_inspect_with_no_live_worker_says_so_and_exits_1() -> None:
    result = runner.invoke(app, ["inspect", "tests.apps.quiet:broker", "ping", "-t", "0.2"])
    assert result.exit_code == 1
    assert "no worker answered within 0.2 s" in result.output


def test_inspect_refuses_an_unknown_question() -> None:
    result = runner.invoke(app, ["inspect", "tests.apps.quiet:broker", "everything"])
    assert result.exit_code == 2
    assert "ask one of ping, stats, active, reserved, registered" in result.output


def test_status_of_an_id_never_seen_is_unknown() -> None:
    result = runner.invoke(app, ["status", "tests.apps.quiet:broker", "no-such-id"])
    assert result.exit_code == 0, result.output
    assert "state     unknown" in result.output


def test_control_shutdown_with_no_worker_exits_1() -> None:
    result = runner.invoke(
        app, ["control", "tests.apps.quiet:broker", "shutdown", "--timeout", "0.2"]
    )
    assert result.exit_code == 1


def test_control_rate_limit_refuses_a_bad_rate() -> None:
    result = runner.invoke(
        app, ["control", "tests.apps.quiet:broker", "rate-limit", "tests.apps.quiet.add", "fast"]
    )
    assert result.exit_code == 2
    assert "invalid rate limit 'fast'" in result.output


def test_an_event_reads_as_one_line() -> None:
    event = Event(
        "task-failed",
        1_800_000_000.0,
        {
            "type": "task-failed",
            "ts": 1_800_000_000.0,
            "task_id": "abc123",
            "name": "app.send",
            "worker": "h.1",
            "queue": "mail",
            "runtime": 0.0123,
            "error": {"type": "ValueError", "message": "bad"},
        },
    )
    line = event_line(event)
    assert "task-failed" in line
    assert "app.send[abc123]  worker=h.1  queue=mail  runtime=12.3ms" in line
    assert "error=ValueError('bad')" in line


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is installed by `make test`")
async def test_aq_top_shows_workers_and_task_counts_and_quits_on_q() -> None:
    session = f"aqtop-{uuid.uuid4().hex[:8]}"
    async with _namespace("redis") as url:
        broker = _app_broker(url)
        async with _workers(url, "--events", "--concurrency", "10"), broker:
            await _until_answering(broker)
            await _tmux(
                "new-session", "-d", "-s", session, "-x", "160", "-y", "50",
                f"cd {ROOT} && AQ_BROKER_URL='{url}' {sys.executable} -m aq top "
                "tests.apps.monitored:broker --interval 0.2",
            )  # fmt: skip
            try:
                await _until_shown(session, lambda screen: any("online" in r for r in screen))
                work = broker.tasks["tests.apps.monitored.work"]
                handles = [await work.kiq(1) for _ in range(25)]
                await asyncio.gather(*(h.result(timeout=10) for h in handles))
                screen = await _until_shown(session, _counted)
                await _tmux("send-keys", "-t", session, "q")
                await _until_gone(session)
            finally:
                await _tmux("kill-session", "-t", session, check=False)
    workers = [line for line in screen if "online" in line]
    assert len(workers) == 2  # the worker and the isolation worker
    [row] = [line for line in screen if "tests.apps.monitored.work" in line]
    assert row.split("│")[2].strip() == "25"  # succeeded
    assert "aq top" in screen[0]


async def _until_answering(broker: aq.Broker) -> None:
    async with asyncio.timeout(30):
        while len(await broker.inspect.ping(timeout=0.5)) < 2:
            pass


async def _tmux(*args: str, check: bool = True) -> str:
    process = await asyncio.create_subprocess_exec(
        "tmux", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    if check and process.returncode != 0:
        raise AssertionError(f"tmux {args[0]} failed: {err.decode()}")
    return out.decode()


def _counted(screen: list[str]) -> bool:
    """Whether aq top shows the 25 successes of ``work``, and both workers (a
    worker's row comes with its first heartbeat or online event, which under
    load may follow its tasks' events)."""
    rows = [line for line in screen if "tests.apps.monitored.work" in line]
    online = [line for line in screen if "online" in line]
    return bool(rows) and rows[0].split("│")[2].strip() == "25" and len(online) == 2


async def _until_shown(session: str, shows: Callable[[list[str]], bool]) -> list[str]:
    """The screen, once ``shows`` accepts it (aq top refreshes every 0.2 s)."""
    screen: list[str] = []
    try:
        async with asyncio.timeout(30):
            while True:
                screen = (await _tmux("capture-pane", "-p", "-t", session)).splitlines()
                if shows(screen):
                    return screen
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError("aq top never showed it:\n" + "\n".join(screen)) from None


async def _until_gone(session: str) -> None:
    async with asyncio.timeout(10):
        while await _session_error(session) == "":  # noqa: ASYNC110 - polling tmux
            await asyncio.sleep(0.1)


async def _session_error(session: str) -> str:
    process = await asyncio.create_subprocess_exec(
        "tmux", "has-session", "-t", session, stderr=asyncio.subprocess.PIPE
    )
    _, err = await process.communicate()
    return err.decode() if process.returncode else ""

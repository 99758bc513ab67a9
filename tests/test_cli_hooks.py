"""``aq worker`` with start-up hooks, as real processes.

A worker whose start-up hook fails exits with status 4 (``EXIT_STARTUP_FAILED``)
and says which hook and why, alone (``--no-supervise``) and as a supervisor's
child (``--supervised``, its standard input a pipe from the supervisor); a hook
that is not ``async`` fails at import with status 2; and what a good hook opens
reaches a task sent over Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator

import pytest

import aq
from aq.worker.supervisor import EXIT_STARTUP_FAILED
from tests.test_cli import PYTHON_M_AQ, ROOT, TIMEOUT, AqProcess, _env, aq_worker, run_aq

pytestmark = pytest.mark.slow

FAILING = "tests.apps.failing_hook:broker"
HOOK = "tests.apps.failing_hook.open_database"
ERROR = (
    f"aq: error: start-up hook {HOOK} failed: "
    "ConnectionRefusedError: db.internal:5432 refused the connection"
)


@contextlib.asynccontextmanager
async def supervised_child(app: str) -> AsyncIterator[AqProcess]:
    """``python -m aq worker APP --supervised`` as its supervisor starts it: its
    standard input a pipe held open by this test (end-of-file stops a child)."""
    proc = await asyncio.create_subprocess_exec(
        *PYTHON_M_AQ,
        "worker",
        app,
        "--supervised",
        cwd=ROOT,
        env=_env(),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    running = AqProcess(proc)
    try:
        yield running
    finally:
        await running.close()
        if proc.stdin is not None:
            proc.stdin.close()


def assert_failed_at_startup(worker: AqProcess) -> None:
    (failed,) = worker.find("worker.startup_failed")
    assert failed.level == "ERROR"
    assert failed.fields["hook"] == HOOK
    assert failed.fields["error"].startswith("ConnectionRefusedError: db.internal:5432")
    assert "Traceback" in worker.stderr  # the hook's, logged with the event
    assert ERROR in worker.lines  # one line that says it all
    assert "close_cache ran" in worker.lines  # the hook before it was undone
    assert not worker.find("worker.started")


async def test_a_failing_startup_hook_exits_4_naming_the_hook_without_a_supervisor() -> None:
    async with aq_worker("--no-supervise", app=FAILING) as worker:
        assert await worker.wait_exit() == EXIT_STARTUP_FAILED, worker.stderr
        assert_failed_at_startup(worker)


async def test_a_supervised_child_whose_startup_hook_fails_exits_4() -> None:
    async with supervised_child(FAILING) as child:
        assert await child.wait_exit() == EXIT_STARTUP_FAILED, child.stderr
        assert_failed_at_startup(child)


async def test_a_hook_that_is_not_async_fails_at_import_with_status_2() -> None:
    result = await run_aq("worker", "tests.apps.bad_hook:broker", "--no-supervise")
    assert result.code == 2, result.stderr
    assert "aq: error: @broker.on_startup: tests.apps.bad_hook.connect is not async" in (
        result.stderr
    )
    assert "worker.started" not in result.stderr


@pytest.mark.parametrize("broker", ["redis"], indirect=True)
async def test_what_startup_hooks_open_reaches_a_task_sent_over_redis(broker: aq.Broker) -> None:
    @broker.task(name="hooks.state")
    async def state() -> list[object]:
        raise AssertionError("runs in the worker")

    env = {"AQ_BROKER_URL": broker.url}
    async with aq_worker("--no-supervise", app="tests.apps.hooks:broker", env=env) as worker:
        await worker.wait_for("worker.started", crashes="isolate")
        greeting = await (await state.kiq()).result(timeout=TIMEOUT)
        assert greeting == ["hello from the start-up hook", worker.pid]
        sent_after = worker.signal(signal.SIGTERM)
        assert await worker.wait_exit() == 0, worker.stderr
        assert not worker.find("hook.shutdown_failed", after=sent_after)


@pytest.mark.parametrize("broker", ["redis"], indirect=True)
async def test_aq_worker_under_its_supervisor_exits_4_when_the_startup_hook_fails(
    broker: aq.Broker,
) -> None:
    env = {"AQ_BROKER_URL": broker.url}  # a network broker: an isolation worker runs too
    async with aq_worker(app=FAILING, env=env) as supervisor:
        assert await supervisor.wait_exit() == EXIT_STARTUP_FAILED, supervisor.stderr
        assert supervisor.find("supervisor.startup_failed", slot=0)
        assert ERROR in supervisor.lines
        assert not supervisor.find("worker.started")

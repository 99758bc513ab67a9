"""``aq worker``'s operations as real processes on Redis: ``--reload`` picks up
edited code (and keeps the old worker through a syntax error), ``--autoscale``
grows the pool under a CPU-bound backlog and shrinks it when idle, and
``--max-memory-per-child`` replaces a leaking child; no task is lost or run twice.

Each test reads the supervisor's stderr (its children's logs included) with
:class:`tests.test_cli.AqProcess` and awaits log lines, never fixed sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import aq
from tests.conftest import _delete_prefix, broker_url
from tests.test_cli import AqProcess, aq_worker

pytestmark = pytest.mark.slow

TASKS = """\
import asyncio

import aq

broker = aq.Broker()  # AQ_BROKER_URL


@broker.task(name="pkg.version")
async def version() -> str:
    return {version!r}


@broker.task(name="pkg.slow")
async def slow(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return {version!r}
"""


@pytest.fixture
async def url() -> AsyncIterator[str]:
    """A Redis broker URL with a namespace of its own, deleted afterwards."""
    made = broker_url("redis")
    yield made
    await _delete_prefix(made)


def _write_app(root: Path, version: str, extra: str = "") -> None:
    package = root / "pkg"
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "tasks.py").write_text(TASKS.format(version=version) + extra)


def _producer(url: str) -> tuple[aq.Broker, aq.Task[[], str], aq.Task[[float], str]]:
    """The producer's view of the app ``_write_app`` writes."""
    broker = aq.Broker(url)

    @broker.task(name="pkg.version")
    async def version() -> str:
        raise NotImplementedError("runs in the worker")

    @broker.task(name="pkg.slow")
    async def slow(seconds: float) -> str:
        raise NotImplementedError("runs in the worker")

    return broker, version, slow


async def _reloaded(worker: AqProcess, after: int) -> None:
    """Wait until the reload after line ``after`` is done and the old worker and
    isolation worker have stopped, so nothing the test sends next reaches them."""
    await worker.wait_for("reload.done", after=after, timeout=30)
    await worker.wait_for("worker.stopped", 2, after=after, timeout=30)


@contextlib.asynccontextmanager
async def _reload_worker(url: str, root: Path, *flags: str) -> AsyncIterator[AqProcess]:
    """``aq worker pkg.tasks:broker --reload`` in ``root``, started."""
    env = {"AQ_BROKER_URL": url, "PYTHONDONTWRITEBYTECODE": "1"}
    args = ("--reload", "--shutdown-timeout", "10", *flags)
    async with aq_worker(*args, app="pkg.tasks:broker", env=env, cwd=root) as worker:
        await worker.wait_for("reload.watching")
        await worker.wait_for("worker.started", 2, timeout=20)
        yield worker


@pytest.mark.timeout(90)
async def test_reload_runs_the_edited_code_and_a_syntax_error_keeps_the_old_worker(
    url: str, tmp_path: Path
) -> None:
    _write_app(tmp_path, "one")
    broker, version, _ = _producer(url)
    async with broker, _reload_worker(url, tmp_path) as worker:
        assert await (await version.kiq()).result(timeout=10) == "one"

        edited = len(worker.lines) - 1
        _write_app(tmp_path, "two")
        await _reloaded(worker, edited)
        assert await (await version.kiq()).result(timeout=10) == "two"

        broken = len(worker.lines) - 1
        _write_app(tmp_path, "three", extra="\ndef broken(:\n")
        (failed,) = await worker.wait_for("reload.failed", after=broken, timeout=30)
        assert failed.fields["slot"] == "0"
        assert "the old one keeps serving" in failed.fields["note"]
        error = "cannot import module 'pkg.tasks': invalid syntax ("
        assert any(error in line for line in worker.lines[broken:]), worker.stderr
        assert await (await version.kiq()).result(timeout=10) == "two"

        fixed = len(worker.lines) - 1
        _write_app(tmp_path, "four")
        await _reloaded(worker, fixed)
        assert await (await version.kiq()).result(timeout=10) == "four"
    assert "Traceback" not in worker.stderr


@pytest.mark.timeout(60)
async def test_a_task_running_during_a_reload_finishes_once_in_the_old_worker(
    url: str, tmp_path: Path
) -> None:
    _write_app(tmp_path, "old")
    broker, version, slow = _producer(url)
    async with broker, _reload_worker(url, tmp_path, "--log-level", "DEBUG") as worker:
        running = await slow.kiq(4.0)
        await worker.wait_for("task.received", task_id=running.id)
        edited = len(worker.lines) - 1
        _write_app(tmp_path, "new")
        await worker.wait_for("reload.done", after=edited, timeout=30)
        (draining,) = await worker.wait_for("worker.draining", after=edited)
        assert draining.fields["in_flight"] == "1"
        assert await running.result(timeout=20) == "old"
        await _reloaded(worker, edited)
        assert await (await version.kiq()).result(timeout=10) == "new"
    assert len(worker.find("task.received", task_id=running.id)) == 1
    assert len(worker.find("task.succeeded", task_id=running.id)) == 1
    assert not worker.find("worker.requeued")


def _worker_children(supervisor: int) -> list[int]:
    """The pids of the worker processes (not the isolation worker) ``supervisor`` runs now."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
            command = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        state, parent = fields[0], int(fields[1])
        if parent == supervisor and state != "Z" and b"isolated" not in command:
            found.append(int(stat.parent.name))
    return found


def _operations_producer(url: str) -> tuple[aq.Broker, aq.Task[[float], int], aq.Task[[int], int]]:
    """The producer's view of tests/apps/operations.py."""
    broker = aq.Broker(url)

    @broker.task(name="operations.spin")
    async def spin(seconds: float) -> int:
        raise NotImplementedError("runs in the worker")

    @broker.task(name="operations.leak")
    async def leak(megabytes: int) -> int:
        raise NotImplementedError("runs in the worker")

    return broker, spin, leak


async def _each_succeeded_once(worker: AqProcess, ids: list[str]) -> None:
    # A result reaches the producer just before its worker logs task.succeeded.
    await worker.wait_for("task.succeeded", len(ids), timeout=10)
    succeeded = Counter(e.fields["task_id"] for e in worker.find("task.succeeded"))
    assert {i: succeeded[i] for i in ids} == dict.fromkeys(ids, 1)
    assert not worker.find("worker.requeued")


@pytest.mark.timeout(90)
async def test_autoscale_grows_the_pool_under_a_cpu_bound_backlog_and_shrinks_it_idle(
    url: str,
) -> None:
    broker, spin, _ = _operations_producer(url)
    args = ("--autoscale", "1,4", "--scale-down-after", "2", "--concurrency", "1")
    env = {"AQ_BROKER_URL": url}
    app = "tests.apps.operations:broker"
    async with broker, aq_worker(*args, app=app, env=env) as supervisor:
        await supervisor.wait_for("worker.started", 2, timeout=20)  # one worker, one isolation
        assert len(_worker_children(supervisor.pid)) == 1
        handles = [await spin.kiq(0.5) for _ in range(30)]
        (up,) = await supervisor.wait_for("autoscale.up", timeout=30)
        assert up.fields["processes"] == "2"
        assert up.fields["reason"].startswith("backlog ")
        assert "workers saturated: event-loop lag" in up.fields["reason"]
        await supervisor.wait_for("worker.started", after=up.index, timeout=20)
        assert len(_worker_children(supervisor.pid)) >= 2

        pids = await asyncio.gather(*(h.result(timeout=60) for h in handles))
        ups = supervisor.find("autoscale.up")
        downs = await supervisor.wait_for("autoscale.down", len(ups), timeout=30)
        assert downs[-1].fields["processes"] == "1"
        assert all(
            d.fields["reason"].startswith("backlog 0 and the newest worker idle") for d in downs
        )
        await supervisor.wait_for("supervisor.child_retired", len(ups), timeout=30)
        assert len(_worker_children(supervisor.pid)) == 1
        await _each_succeeded_once(supervisor, [h.id for h in handles])
    assert len(set(pids)) >= 2  # served by more than one process
    assert "Traceback" not in supervisor.stderr


@pytest.mark.timeout(60)
async def test_a_child_past_max_memory_is_replaced_and_every_task_completes_once(
    url: str,
) -> None:
    broker, _, leak = _operations_producer(url)
    args = ("--max-memory-per-child", "64", "--concurrency", "1", "--processes", "1")
    env = {"AQ_BROKER_URL": url}
    app = "tests.apps.operations:broker"
    async with broker, aq_worker(*args, app=app, env=env) as supervisor:
        await supervisor.wait_for("worker.started", 2, timeout=20)
        handles = [await leak.kiq(20) for _ in range(4)]
        pids = await asyncio.gather(*(h.result(timeout=40) for h in handles))
        limits = supervisor.find("worker.memory_limit")
        letters = await broker.admin.dead_letters("default")
        replaced = supervisor.find("supervisor.child_exited", slot=0, code=0)
        await _each_succeeded_once(supervisor, [h.id for h in handles])
    assert len(set(pids)) >= 2  # a fresh process took over
    assert limits, supervisor.stderr
    assert limits[0].fields["limit"] == "64MB"
    assert float(limits[0].fields["rss"].removesuffix("MB")) > 64
    assert replaced
    assert letters == []
    assert "Traceback" not in supervisor.stderr

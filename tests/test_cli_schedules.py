"""`aq scheduler`, `aq worker --scheduler` and `aq schedules` as a person runs them,
against a real Redis and RabbitMQ. The app is tests/apps/scheduled.py (a
one-second schedule whose runs are recorded in Redis)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis
from typer.testing import CliRunner

import aq
from aq.cli import app
from tests.conftest import AMQP_URL, REDIS_URL, _delete_prefix, delete_amqp_namespace
from tests.test_cli import PYTHON_M_AQ, ROOT, AqProcess, _env, run_aq

pytestmark = pytest.mark.slow

APP = "tests.apps.scheduled:broker"
RECORD_URL = f"{REDIS_URL.rsplit('/', 1)[0]}/5"


@pytest.fixture(params=["redis", "amqp"])
def url(request: pytest.FixtureRequest) -> Iterator[str]:
    prefix = f"aqcli-{uuid.uuid4().hex[:12]}"
    if request.param == "redis":
        broker_url = f"{REDIS_URL}?prefix={prefix}"
        yield broker_url
        asyncio.run(_delete_prefix(broker_url))
    else:
        broker_url = f"{AMQP_URL}?prefix={prefix}"
        yield broker_url
        asyncio.run(delete_amqp_namespace(broker_url))


@contextlib.asynccontextmanager
async def aq_running(*args: str, url: str) -> AsyncIterator[AqProcess]:
    """``python -m aq *args`` with the app on ``url``, killed on the way out."""
    proc = await asyncio.create_subprocess_exec(
        *PYTHON_M_AQ,
        *args,
        cwd=ROOT,
        env=_env() | {"AQ_BROKER_URL": url, "AQ_TEST_RECORD_URL": RECORD_URL},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    running = AqProcess(proc)
    try:
        yield running
    finally:
        await running.close()


async def _runs(count: int) -> list[str]:
    # No socket timeout: redis-py's own (5 s) would cut the 15-second BLPOP short.
    async with Redis.from_url(RECORD_URL, decode_responses=True, socket_timeout=None) as record:
        await record.delete("announced", "fires")
        runs: list[str] = []
        while len(runs) < count:
            popped = await record.blpop(["announced"], timeout=15)
            assert popped is not None, "the schedule did not fire"
            runs.append(str(popped[1]))
        return runs


async def test_aq_scheduler_leads_fires_and_resigns_on_sigterm(url: str) -> None:
    async with (
        aq_running("worker", APP, "--no-supervise", url=url),
        aq_running("scheduler", APP, "--lease-time", "5", url=url) as scheduler,
    ):
        await scheduler.wait_for("scheduler.leading")
        runs = await _runs(2)
        assert all(f":{scheduler.pid}:" in run for run in runs)  # sent by this scheduler
        scheduler.signal(signal.SIGTERM)
        assert await scheduler.wait_exit() == 0
        assert "Traceback" not in scheduler.stderr
    if url.startswith("redis"):  # it gave its lease up: another may lead at once
        broker = aq.Broker(url)
        async with broker:
            assert broker.store is not None
            assert await broker.store.acquire_lease("scheduler", "next", ttl=5) is not None


async def test_aq_worker_with_scheduler_fires_the_schedules(url: str) -> None:
    async with aq_running("worker", APP, "--scheduler", "--lease-time", "5", url=url) as worker:
        runs = await _runs(2)
        assert len({run.split("|")[0] for run in runs}) == 2
        worker.signal(signal.SIGTERM)
        assert await worker.wait_exit() == 0


async def test_aq_scheduler_refuses_an_in_process_broker() -> None:
    result = await run_aq("scheduler", "tests.apps.basic:broker")
    assert result.code == 2
    assert "memory:// brokers live inside one process" in result.stderr
    assert "Traceback" not in result.stderr


def test_aq_schedules_lists_schedules_from_code_and_the_store(url: str) -> None:
    sys.modules.pop("tests.apps.scheduled", None)
    stored = url.startswith("redis")

    async def add() -> None:
        broker = aq.Broker(url)
        remind = broker.register(lambda user: None, name="remind")
        async with broker:
            await broker.add_schedule(
                remind, aq.cron("0 8 * * *", tz="Europe/Paris"), args=[42], name="remind-42"
            )

    if stored:
        asyncio.run(add())
    result = CliRunner().invoke(
        app, ["schedules", APP], env={"AQ_BROKER_URL": url, "COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    if stored:
        assert (
            lines[0]
            == "active scheduler: none (no scheduler is running, or none has led for a lease time)"
        )
    else:
        assert lines[0].startswith("active scheduler: not recorded: RabbitMQ elects it")
    assert lines[1].split() == [
        "name",
        "task",
        "next",
        "fire",
        "(UTC)",
        "last",
        "fire",
        "(UTC)",
        "when",
    ]
    tick = lines[2].split()
    assert tick[:2] == ["scheduled.tick", "scheduled.tick"]
    assert tick[-2:] == ["every", "1s"]
    if stored:
        remind = lines[3].split()
        assert remind[:3] == ["remind-42", "*", "remind"]
        assert remind[-3:] == ["'0", "8", "*", "*", "*'", "Europe/Paris"][-3:]
        assert lines[-1] == "2 schedule(s); * added at run time"
    else:
        assert lines[-1] == "1 schedule(s); * added at run time"


def test_aq_schedules_pauses_and_resumes_a_schedule(url: str) -> None:
    sys.modules.pop("tests.apps.scheduled", None)
    env = {"AQ_BROKER_URL": url, "COLUMNS": "200"}
    paused = CliRunner().invoke(app, ["schedules", APP, "--pause", "scheduled.tick"], env=env)
    if not url.startswith("redis"):  # RabbitMQ alone keeps no store
        assert paused.exit_code == 2
        assert "pausing schedules" in paused.output
        return
    assert paused.exit_code == 0, paused.output
    tick = paused.output.splitlines()[2].split()
    assert tick[:3] == ["scheduled.tick", "scheduled.tick", "paused"]
    resumed = CliRunner().invoke(app, ["schedules", APP, "--resume", "scheduled.tick"], env=env)
    assert resumed.exit_code == 0, resumed.output
    assert "paused" not in resumed.output
    unknown = CliRunner().invoke(app, ["schedules", APP, "--pause", "nothing"], env=env)
    assert unknown.exit_code == 2
    assert "there is no schedule named 'nothing'" in unknown.output

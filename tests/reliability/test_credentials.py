"""A wrong password fails at start-up, and no password is ever shown.

Each test starts a private redis-server on 127.0.0.1 whose password is a fresh
secret, and looks for that secret (and the wrong one tried) in every log record
at DEBUG, in the error raised and everything chained to it, and in what the
``aq`` command prints: ``aq worker`` refused at start-up, ``aq queues`` and a
worker's start-up lines with the right password. RabbitMQ's side is in
tests/reliability/test_amqp_tls.py, which has a private node to add users to.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import aq
from aq.testing import running_worker
from tests.reliability.conftest import RedisServer
from tests.reliability.leaks import aq_command, assert_shown_nowhere, shown
from tests.test_cli import PYTHON_M_AQ, ROOT, AqProcess, _env

APP = "tests.apps.remote:broker"  # its broker comes from AQ_BROKER_URL


def _secret() -> str:
    return f"pw-{uuid.uuid4().hex}"


@pytest.fixture
def right() -> str:
    """The server's password."""
    return _secret()


@pytest.fixture
def wrong() -> str:
    """A password the server does not have."""
    return _secret()


@pytest.fixture
async def server(tmp_path: Path, right: str) -> AsyncIterator[RedisServer]:
    started = RedisServer(tmp_path, password=right)
    await started.start()
    try:
        yield started
    finally:
        await started.kill()


def _url(server: RedisServer, password: str, **options: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"prefix": uuid.uuid4().hex, **options}.items())
    return f"redis://:{password}@127.0.0.1:{server.port}/0?{query}"


@pytest.mark.timeout(30)
async def test_a_wrong_redis_password_fails_startup_at_once_and_shows_neither_password(
    server: RedisServer, right: str, wrong: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    began = time.monotonic()
    with pytest.raises(aq.ConfigurationError, match="Redis refused the credentials") as caught:
        await aq.Broker(_url(server, wrong, publish_timeout="30")).startup()
    assert time.monotonic() - began < 5  # not retried until publish_timeout
    assert_shown_nowhere(shown(caplog, caught.value), right, wrong)


@pytest.mark.timeout(30)
async def test_a_task_run_with_the_right_redis_password_logs_nothing_of_it(
    server: RedisServer, right: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    broker = aq.Broker(_url(server, right))

    @broker.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    async with broker, running_worker(broker):
        assert await (await add.kiq(2, 3)).result(timeout=10) == 5
    assert "***" in repr(broker)
    assert_shown_nowhere(shown(caplog) + repr(broker), right)


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_aq_worker_with_a_wrong_password_exits_saying_so_without_the_password(
    server: RedisServer, right: str, wrong: str
) -> None:
    # Under the supervisor (the default) too: its children would fail in turn for ever.
    code, output = await aq_command("worker", APP, url=_url(server, wrong))
    assert code == 2, output
    assert "aq: error: connect: Redis refused the credentials in the broker URL" in output
    assert_shown_nowhere(output, right, wrong)


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_aq_queues_with_the_right_password_shows_the_queues_and_not_the_password(
    server: RedisServer, right: str
) -> None:
    code, output = await aq_command("queues", APP, url=_url(server, right))
    assert code == 0, output
    header, row = output.splitlines()[:2]
    assert header.split() == [
        "queue",
        "ready",
        "delayed",
        "unacked",
        "isolated",
        "dead",
        "consumers",
    ]
    assert row.split() == ["default", "0", "0", "0", "0", "0", "0"]
    assert_shown_nowhere(output, right)


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_aq_worker_with_the_right_password_logs_its_start_and_stop_without_it(
    server: RedisServer, right: str
) -> None:
    url = _url(server, right)
    process = await asyncio.create_subprocess_exec(
        *PYTHON_M_AQ,
        "worker",
        APP,
        "--log-level",
        "DEBUG",
        cwd=ROOT,
        env=_env() | {"AQ_BROKER_URL": url},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    worker = AqProcess(process)
    try:
        started = await worker.wait_for("worker.started", 2)  # the worker and the isolation one
        worker.signal(signal.SIGTERM)
        assert await worker.wait_exit() == 0
    finally:
        await worker.close()
    assert {event.fields["broker"] for event in started} == {url.replace(right, "***")}
    assert_shown_nowhere(worker.stderr, right)

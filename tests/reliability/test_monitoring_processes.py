"""Monitoring real worker processes: inspect with one of them SIGKILLed, metrics
added up over ``--processes 2``, and ``/healthz`` turning 503 when the broker stops."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import aq
from aq.monitor.inspect import Answers
from tests.conftest import AMQP_URL, REDIS_URL, _delete_prefix, broker_url, delete_amqp_namespace
from tests.reliability.conftest import RedisServer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def _workers(url: str, *flags: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """`aq worker tests.apps.monitored:broker` on ``url`` with ``flags``, stopped after."""
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env["AQ_BROKER_URL"] = url
    if url.startswith("amqp"):
        env["AQ_TEST_STORE_URL"] = f"{REDIS_URL}?prefix=aqmon-store"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aq",
        "worker",
        "tests.apps.monitored:broker",
        "--log-level",
        "WARNING",
        *flags,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(20):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()


def _app_broker(url: str, store: str | None = None) -> aq.Broker:
    """The producer's view of tests/apps/monitored.py."""
    broker = aq.Broker(url, store=store)

    @broker.task(name="tests.apps.monitored.work")
    async def work(ms: int) -> int:
        raise NotImplementedError("runs in the worker process")

    return broker


async def _pings(broker: aq.Broker, count: int) -> Answers:
    """The workers' stats, once ``count`` workers answer (worker processes take a
    moment to start)."""
    async with asyncio.timeout(30):
        while True:
            answers = await broker.inspect.stats(timeout=0.5)
            if len(answers) >= count:
                return answers


@asynccontextmanager
async def _namespace(kind: str) -> AsyncIterator[str]:
    """A broker URL of a namespace of its own, removed after."""
    if kind == "redis":
        url = broker_url("redis")
        try:
            yield url
        finally:
            await _delete_prefix(url)
        return
    url = f"{AMQP_URL}?prefix=aqmon-{os.urandom(4).hex()}"
    try:
        yield url
    finally:
        await delete_amqp_namespace(url)


@pytest.mark.parametrize("kind", ["redis", "amqp"])
async def test_inspect_answers_come_from_the_live_workers_when_one_was_killed(kind: str) -> None:
    async with _namespace(kind) as url:
        broker = _app_broker(url)
        async with _workers(url, "--processes", "2"), broker:
            before = await _pings(broker, 3)  # two workers and the isolation worker
            victim_id, victim = next(
                (worker_id, stats)
                for worker_id, stats in sorted(before.items())
                if stats["concurrency"] > 1
            )
            os.kill(victim["pid"], signal.SIGKILL)
            after = await broker.inspect.ping(timeout=1.0)
    assert victim_id not in after
    survivors = set(before) - {victim_id}
    assert survivors <= set(after)  # a replacement may answer too


async def test_metrics_of_two_processes_add_up_and_count_every_task() -> None:
    port = _free_port()
    async with _namespace("redis") as url:
        broker = _app_broker(url)
        async with (
            _workers(url, "--processes", "2", "--concurrency", "5", "--metrics-port", str(port)),
            broker,
        ):
            workers, stats, text = await _run_forty(broker, port)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    succeeded = sum(
        v
        for (name, labels), v in samples.items()
        if name == "aq_tasks_total" and ("outcome", "succeeded") in labels
    )
    received = sum(v for (name, _), v in samples.items() if name == "aq_tasks_received_total")
    runtimes = sum(v for (name, _), v in samples.items() if name == "aq_task_runtime_seconds_count")
    assert (succeeded, received, runtimes) == (40, 40, 40)
    processed = sorted(s["processed"] for s in stats.values() if s["concurrency"] > 1)
    assert sum(processed) == 40
    assert processed[0] > 0  # both processes ran some: the sum is of two
    assert samples[("aq_worker_concurrency_slots", ())] == 5 + 5 + 1
    alive = [labels for (name, labels), _ in samples.items() if name.startswith("aq_worker_alive")]
    assert len(alive) == len(workers) == 3
    assert samples[("aq_queue_messages", (("queue", "default"), ("state", "ready")))] == 0


async def test_healthz_turns_503_when_the_broker_stops(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    await server.start()
    port = _free_port()
    try:
        async with _workers(server.url, "--metrics-port", str(port)):
            await _until_status(port, 200)
            await server.kill()
            body = await _until_status(port, 503)
    finally:
        await server.kill()
    assert "has not reached its broker recently" in body


async def test_a_metrics_port_in_use_fails_at_start_naming_the_port() -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "aq",
            "worker",
            "tests.apps.monitored:broker",
            "--metrics-port",
            str(port),
            cwd=ROOT,
            env={**os.environ, "AQ_BROKER_URL": REDIS_URL},
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(30):
            _, err = await process.communicate()
    assert process.returncode == 2
    assert f"--metrics-port {port}: port {port} on 0.0.0.0 is in use" in err.decode()


async def _run_forty(broker: aq.Broker, port: int) -> tuple[Answers, Answers, str]:
    """Run 40 tasks of 0.1 s on the workers; their stats and the metrics after."""
    workers = await _pings(broker, 3)
    work = broker.tasks["tests.apps.monitored.work"]
    handles = [await work.kiq(100) for _ in range(40)]
    await asyncio.gather(*(h.result(timeout=30) for h in handles))
    # A worker counts a task as processed once it is acked, just after its result
    # went out: ask until the last acks are counted.
    async with asyncio.timeout(10):
        while True:
            stats = await broker.inspect.stats(timeout=1.0)
            if sum(s["processed"] for s in stats.values()) >= 40:
                break
    return workers, stats, await asyncio.to_thread(_get, port, "/metrics")


def _get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        body: bytes = response.read()
        return body.decode()


def _status(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, "not listening yet"


async def _until_status(port: int, wanted: int) -> str:
    """Poll ``/healthz`` (as a probe would) until it answers ``wanted``; the body."""
    async with asyncio.timeout(30):
        while True:
            code, body = await asyncio.to_thread(_status, port)
            if code == wanted:
                return body
            await asyncio.sleep(0.2)


async def test_workers_told_to_shut_down_stop_and_aq_worker_exits_3() -> None:
    async with _namespace("redis") as url:
        broker = _app_broker(url)
        async with _workers(url, "--processes", "2") as process, broker:
            await _pings(broker, 3)
            answers = await broker.control.shutdown(timeout=1.0)
            async with asyncio.timeout(30):
                code = await process.wait()
    assert sorted(a["ok"] for a in answers.values()) == ["shutting down"] * 3
    assert code == 3

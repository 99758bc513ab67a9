"""Shared fixtures: the broker contract suite runs against every transport."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import pytest

import aq

# Transports the contract suite runs against.
BROKERS = ["memory", "redis", "redis-cluster", "amqp"]

#: The Redis server `make test` starts; tests isolate themselves by key prefix.
REDIS_URL = os.environ.get("AQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
#: The RabbitMQ server `make test` starts; tests isolate themselves by name prefix.
AMQP_URL = os.environ.get("AQ_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


#: One name prefix for every RabbitMQ contract test of a session: RabbitMQ takes
#: several milliseconds to create or delete a durable queue, and each queue has
#: 34, so tests share them, purged after each test and deleted after the session.
AMQP_PREFIX = f"aqtest-{uuid.uuid4().hex[:12]}"
_amqp_declared: set[str] = set()


def broker_url(kind: str, cluster: str = "") -> str:
    """A URL for an isolated broker of ``kind`` (RabbitMQ: isolated once purged)."""
    prefix = f"prefix=aqtest-{uuid.uuid4().hex[:12]}"
    if kind == "memory":
        return f"memory://test-{uuid.uuid4().hex}"
    if kind == "redis":
        return f"{REDIS_URL}?{prefix}"
    if kind == "redis-cluster":
        return f"redis+cluster://{cluster}/?{prefix}"
    if kind == "amqp":
        return f"{AMQP_URL}?prefix={AMQP_PREFIX}"
    raise ValueError(kind)


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A three-node Redis Cluster on loopback for the session: "host:port,host:port,..."."""
    directory = tmp_path_factory.mktemp("cluster")
    ports = _cluster_ports(3)
    processes = [
        subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(directory / f"{port}.conf"),
                "--dir",
                str(directory),
                "--save",
                "",
                "--appendonly",
                "no",
                "--logfile",
                str(directory / f"{port}.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port in ports
    ]
    try:
        for port in ports:
            _wait_for(["redis-cli", "-p", str(port), "ping"], "PONG")
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=30,
        )
        for port in ports:
            _wait_for(["redis-cli", "-p", str(port), "cluster", "info"], "cluster_state:ok")
        yield ",".join(f"127.0.0.1:{p}" for p in ports)
    finally:
        for process in processes:
            process.kill()
            process.wait()


def _cluster_ports(count: int) -> list[int]:
    """Free ports whose cluster-bus twins (port + 10000) are free too."""
    ports: list[int] = []
    for port in range(21000 + os.getpid() % 2000 * 4, 30000):
        if all(_is_free(p) for p in (port, port + 10000)):
            ports.append(port)
            if len(ports) == count:
                return ports
    raise RuntimeError("no free ports for a Redis Cluster")


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _wait_for(command: list[str], expected: str) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # no event tells when a node is ready
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if expected in result.stdout:
            return
        time.sleep(0.05)
    raise TimeoutError(f"{' '.join(command)} never printed {expected!r}")


async def _delete_prefix(url: str) -> None:
    transport = aq.Broker(url).transport
    async with transport:
        await transport.delete_namespace()  # type: ignore[attr-defined]


async def delete_amqp_namespace(url: str, queues: Sequence[str] = ("default",)) -> None:
    """Delete what a test made under ``url``'s prefix on RabbitMQ: ``queues`` with
    their dead-letter and delay queues, and the schedulers' election queue."""
    broker: Any = aq.Broker(url)
    async with broker:
        context = broker.transport.context
        async with context.raw_channel() as channel:
            await channel.queue_delete(context.names.election_queue("scheduler"))
        broker.transport.declarer.declared.update(queues)
        await broker.transport.delete_namespace()


@pytest.fixture(scope="session", autouse=True)
def _delete_amqp_queues() -> Iterator[None]:
    yield
    if _amqp_declared:
        asyncio.run(_delete_amqp_names())


async def _delete_amqp_names() -> None:
    transport: Any = aq.Broker(f"{AMQP_URL}?prefix={AMQP_PREFIX}").transport
    async with transport:
        transport.declarer.declared.update(_amqp_declared)
        await transport.delete_namespace()


@pytest.fixture(autouse=True)
def _no_env_broker_url(monkeypatch: pytest.MonkeyPatch) -> None:
    # AQ_BROKER_URL overrides the URL given to aq.Broker; tests choose their own.
    monkeypatch.delenv("AQ_BROKER_URL", raising=False)


@pytest.fixture(params=BROKERS)
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[aq.Broker]:
    """A started broker on a fresh namespace of each transport."""
    kind = str(request.param)
    cluster = request.getfixturevalue("redis_cluster") if kind == "redis-cluster" else ""
    b = aq.Broker(broker_url(kind, cluster))
    try:
        async with b:
            yield b
            if kind == "amqp":
                await b.transport.purge_namespace()  # type: ignore[attr-defined]
                _amqp_declared.update(b.transport.declarer.declared)  # type: ignore[attr-defined]
    finally:
        if kind.startswith("redis"):
            await _delete_prefix(b.url)


@pytest.fixture
async def twin_of(broker: aq.Broker) -> AsyncIterator[Callable[..., aq.Broker]]:
    """Makes more brokers on ``broker``'s server, with options of their own
    (signing keys, a serializer, compression); shut down afterwards, their
    RabbitMQ queues purged."""
    made: list[aq.Broker] = []

    def make(**options: Any) -> aq.Broker:
        made.append(aq.Broker(broker.url, **options))
        return made[-1]

    yield make
    for other in made:
        if broker.url.startswith("amqp"):
            await other.startup()
            await other.transport.purge_namespace()  # type: ignore[attr-defined]
            _amqp_declared.update(other.transport.declarer.declared)  # type: ignore[attr-defined]
        await other.shutdown()


_STORE_URLS: weakref.WeakKeyDictionary[aq.Broker, str | None] = weakref.WeakKeyDictionary()


def twin(broker: aq.Broker) -> aq.Broker:
    """Another producer on ``broker``'s server and store (a :func:`stored_broker`)."""
    return aq.Broker(broker.url, store=_STORE_URLS[broker])


@pytest.fixture(params=["memory", "redis", "amqp"])
async def stored_broker(request: pytest.FixtureRequest) -> AsyncIterator[aq.Broker]:
    """A started broker with a store: its own, or for RabbitMQ one in Redis."""
    kind = str(request.param)
    store = broker_url("redis") if kind == "amqp" else None
    b = aq.Broker(broker_url(kind), store=store)
    _STORE_URLS[b] = store
    try:
        async with b:
            yield b
            if kind == "amqp":
                await b.transport.purge_namespace()  # type: ignore[attr-defined]
                _amqp_declared.update(b.transport.declarer.declared)  # type: ignore[attr-defined]
    finally:
        for url in (b.url, store):
            if url is not None and url.startswith("redis"):
                await _delete_prefix(url)


@pytest.fixture
async def result_backend(broker: aq.Broker) -> AsyncIterator[str | None]:
    """``None`` for brokers that keep results themselves, else a Redis URL to keep them in."""
    if broker.store is not None:
        yield None
        return
    url = broker_url("redis")
    try:
        yield url
    finally:
        await _delete_prefix(url)


def pytest_report_header() -> str:
    env = os.environ.get("AQ_BROKER_URL")
    return f"aq contract brokers: {', '.join(BROKERS)}; AQ_BROKER_URL={env}"

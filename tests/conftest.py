"""Shared fixtures: the broker contract suite runs against every transport."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

import aq

# Transports the contract suite runs against; RabbitMQ joins here.
BROKERS = ["memory", "redis", "redis-cluster"]

#: The Redis server `make test` starts; tests isolate themselves by key prefix.
REDIS_URL = os.environ.get("AQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def broker_url(kind: str, cluster: str = "") -> str:
    """A URL for an isolated broker of ``kind``."""
    prefix = f"prefix=aqtest-{uuid.uuid4().hex[:12]}"
    if kind == "memory":
        return f"memory://test-{uuid.uuid4().hex}"
    if kind == "redis":
        return f"{REDIS_URL}?{prefix}"
    if kind == "redis-cluster":
        return f"redis+cluster://{cluster}/?{prefix}"
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
    finally:
        if kind.startswith("redis"):
            await _delete_prefix(b.url)


def pytest_report_header() -> str:
    env = os.environ.get("AQ_BROKER_URL")
    return f"aq contract brokers: {', '.join(BROKERS)}; AQ_BROKER_URL={env}"

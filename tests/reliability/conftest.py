"""A private redis-server per test, which the test may kill and restart."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis


async def _until(probe: Callable[[], Awaitable[Any]], seconds: float = 10) -> None:
    """Retry ``probe`` until it returns something true: no event tells when a
    freshly started server is ready."""
    async with asyncio.timeout(seconds):
        while True:
            with contextlib.suppress(Exception):
                if await probe():
                    return
            await asyncio.sleep(0.02)


async def _kill(process: asyncio.subprocess.Process | None) -> None:
    if process is not None and process.returncode is None:
        process.send_signal(signal.SIGKILL)
        await process.wait()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A redis-server on 127.0.0.1 with append-only persistence (fsync always)."""

    def __init__(self, directory: Path, *extra: str, password: str | None = None) -> None:
        self.directory = directory
        self.port = _free_port()
        self.extra = list(extra)
        self.password = password
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            pytest.fail("redis-server is not installed: run `make test`, which installs it")
        self.process = await asyncio.create_subprocess_exec(
            executable,
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.directory),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            str(self.directory / "redis.log"),
            *(["--requirepass", self.password] if self.password else []),
            *self.extra,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        client = Redis.from_url(self.url)
        try:
            await _until(client.ping)
        finally:
            await client.aclose()

    async def kill(self) -> None:
        """SIGKILL: no chance to flush anything that fsync-always did not already."""
        await _kill(self.process)


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    server = RedisServer(tmp_path)
    await server.start()
    try:
        yield server
    finally:
        await server.kill()


class Sentinel:
    """A redis-server in sentinel mode watching ``master`` as service ``aqtest``."""

    def __init__(self, directory: Path, master: RedisServer) -> None:
        self.directory = directory
        self.master = master
        self.port = _free_port()
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        config = self.directory / "sentinel.conf"
        config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.directory}\n"
            f"sentinel monitor aqtest 127.0.0.1 {self.master.port} 1\n"
        )
        executable = shutil.which("redis-server")
        assert executable is not None
        self.process = await asyncio.create_subprocess_exec(
            executable,
            str(config),
            "--sentinel",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        client = Redis(host="127.0.0.1", port=self.port)
        try:
            await _until(
                lambda: client.execute_command("SENTINEL", "get-master-addr-by-name", "aqtest")  # type: ignore[no-untyped-call]
            )
        finally:
            await client.aclose()

    async def kill(self) -> None:
        await _kill(self.process)


from tests.reliability.rabbit import rabbit_server  # noqa: E402  (a fixture for the RabbitMQ tests)

__all__ = ["rabbit_server"]

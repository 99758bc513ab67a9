"""The metrics port: ``/metrics`` for Prometheus and ``/healthz`` for probes.

A deliberately small HTTP/1.1 server on asyncio: one request per connection,
GET and HEAD only, a request head of at most 8 KiB read within 5 s, an answer
written within 10 s, at most 32 connections at once. What it serves comes
from two callables, so the same server runs in a lone worker (its own
metrics, its own health) and in the supervisor of several (their metrics
added up, healthy only if each is). The socket is bound by :func:`bind`
before anything else starts, so a port that is taken fails ``aq worker`` at
once, naming the port.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Awaitable, Callable

from aq.errors import ConfigurationError
from aq.logs import event

__all__ = ["Health", "MetricsServer", "bind"]

log = logging.getLogger("aq.metrics")

#: (healthy, why): what ``/healthz`` answers.
Health = tuple[bool, str]
_READ_TIMEOUT = 5.0
_WRITE_TIMEOUT = 10.0
_MAX_REQUEST = 8192
_MAX_CONNECTIONS = 32
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def bind(host: str, port: int, option: str = "--metrics-port") -> socket.socket:
    """A listening socket on ``host:port``.

    Raises:
        aq.ConfigurationError: the port is in use or cannot be bound; the message names it.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(64)
    except OSError as exc:
        sock.close()
        why = "is in use by another process" if exc.errno == errno.EADDRINUSE else str(exc)
        raise ConfigurationError(
            f"{option} {port}: port {port} on {host} {why}; choose another port"
        ) from exc
    sock.setblocking(False)
    return sock


class MetricsServer:
    """Serves ``/metrics`` and ``/healthz`` on a bound socket.

    Args:
        sock: from :func:`bind`.
        metrics: returns the exposition text of every metric.
        health: returns whether this worker (or every worker) is healthy, and why not.
    """

    def __init__(
        self,
        sock: socket.socket,
        metrics: Callable[[], Awaitable[bytes]],
        health: Callable[[], Awaitable[Health]],
    ) -> None:
        self.sock = sock
        self.metrics = metrics
        self.health = health
        self._server: asyncio.Server | None = None
        self._busy = 0

    @property
    def port(self) -> int:
        port: int = self.sock.getsockname()[1]
        return port

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, sock=self.sock, limit=_MAX_REQUEST)
        event(log, logging.INFO, "metrics.serving", port=self.port)

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._busy >= _MAX_CONNECTIONS:  # refuse rather than pile up
            writer.transport.abort()
            return
        self._busy += 1
        try:
            await self._exchange(reader, writer)
        finally:
            self._busy -= 1

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = b""
        try:
            async with asyncio.timeout(_READ_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            status, body, kind = await self._answer(head)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            status, body, kind = "400 Bad Request", b"bad request\n", "text/plain"
        except Exception as exc:  # a failing collector must not kill the server
            log.exception("metrics: answering a request failed")
            status, body, kind = "500 Internal Server Error", f"{exc}\n".encode(), "text/plain"
        head_out = (
            f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        if head.startswith(b"HEAD "):
            body = b""
        try:  # a client that does not read gets a few seconds, then is cut off
            async with asyncio.timeout(_WRITE_TIMEOUT):
                writer.write(head_out.encode() + body)
                await writer.drain()
                writer.close()
                await writer.wait_closed()
        except (TimeoutError, ConnectionError):
            writer.transport.abort()

    async def _answer(self, head: bytes) -> tuple[str, bytes, str]:
        method, _, rest = head[:_MAX_REQUEST].partition(b" ")
        path = rest.split(b" ", 1)[0].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            return "405 Method Not Allowed", b"GET only\n", "text/plain"
        if path == b"/metrics":
            return "200 OK", await self.metrics(), CONTENT_TYPE
        if path == b"/healthz":
            healthy, why = await self.health()
            if healthy:
                return "200 OK", b"ok\n", "text/plain"
            return "503 Service Unavailable", f"{why}\n".encode(), "text/plain"
        return "404 Not Found", b"try /metrics or /healthz\n", "text/plain"

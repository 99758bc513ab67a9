"""Settings from the URL, the client, and the translation of redis-py errors.

aq's own options ride in the URL's query string (and are removed before the
URL reaches redis-py), so one ``AQ_BROKER_URL`` says everything:

    redis://:secret@10.0.0.5:6379/0?prefix=shop&visibility_timeout=60

TLS (``rediss://`` and its ``cafile``, ``certfile``, ``keyfile`` options) is
:mod:`aq.transport.redis.tls`.

Every redis-py exception is translated here into aq's tree: connection
problems become :class:`aq.ConnectionLost` (or :class:`aq.BrokerUnavailable`
once a deadline passes), refused credentials and a failed TLS set-up
:class:`aq.ConfigurationError`, anything else :class:`aq.BrokerError`.

A connection that silently stops passing packets (a partition, a dead NAT
entry: no FIN, no RST) is noticed by the socket timeout: every command, the
workers' and inboxes' 1-second blocking reads included, fails once Redis has
not answered for ``socket_timeout`` seconds, and the caller retries on a new
connection. TCP keepalive drops idle pooled connections to a dead peer, so
their next user need not wait for the timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel

from aq.errors import BrokerError, ConfigurationError, ConnectionLost
from aq.transport.kit import CommonSettings, read_options, redact_url, retry_until
from aq.transport.kit.options import option
from aq.transport.kit.tls import tls_failure, tls_problem
from aq.transport.redis import tls

__all__ = [
    "RedisSettings",
    "group_gone",
    "make_client",
    "parse_url",
    "raise_if_cancelling",
    "retrying",
    "translated",
]

log = logging.getLogger("aq.redis")
T = TypeVar("T")

CONNECTION_ERRORS = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.BusyLoadingError,
    ConnectionError,
    OSError,
)

#: Blocking reads wait 1 s at the server; a socket timeout must leave their answer
#: time to arrive, or every idle read would count as a dead connection.
_MIN_SOCKET_TIMEOUT = 2.0
_CONNECT_TIMEOUT = 5.0
# Probe a connection idle for 10 s every 5 s and give up after 3 unanswered probes:
# an idle pooled connection to a vanished peer is dropped within 25 s.
_KEEPALIVE = {"TCP_KEEPIDLE": 10, "TCP_KEEPINTVL": 5, "TCP_KEEPCNT": 3}


def _check_socket_timeout(value: float) -> str | None:
    if value < _MIN_SOCKET_TIMEOUT:
        return (
            "too short: workers wait 1 s for new messages in each read, so use at least "
            f"{_MIN_SOCKET_TIMEOUT:g}"
        )
    return None


@dataclass(frozen=True, slots=True)
class RedisSettings(CommonSettings):
    """aq's options for the Redis transport, read from the URL's query string
    (besides those of :class:`~aq.transport.kit.CommonSettings`).

    Attributes:
        visibility_timeout: seconds after which a claimed message whose worker
            stopped refreshing it is given to another worker.
        max_connections: connections per process; callers beyond it wait.
        socket_timeout: seconds Redis may leave a command unanswered before its
            connection counts as dead (so a silent partition is noticed within
            this); at least 2, since blocking reads wait 1 s for an answer.
        cafile, capath, certfile, keyfile, no_verify_ssl: TLS, for ``rediss://``
            URLs only (see :mod:`aq.transport.redis.tls`).
    """

    visibility_timeout: float = option(60.0)
    max_connections: int = option(64)
    socket_timeout: float = option(5.0, _check_socket_timeout)
    cafile: str | None = option(None, tls.check_path)
    capath: str | None = option(None, tls.check_path)
    certfile: str | None = option(None, tls.check_path)
    keyfile: str | None = option(None, tls.check_path)
    no_verify_ssl: int = option(0, tls.check_flag)


_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster")


def parse_url(url: str, given: Mapping[str, Any] | None = None) -> tuple[str, RedisSettings]:
    """Split ``url`` into the URL for redis-py and aq's settings.

    Raises:
        aq.ConfigurationError: an aq option has an invalid value, or TLS options
            are given for a URL that is not ``rediss://``.
    """
    scheme = urlsplit(url).scheme
    if scheme not in _SCHEMES:
        raise ConfigurationError(f"not a Redis URL: {redact_url(url)!r}")
    clean, settings = read_options(url, RedisSettings, given)
    tls.check_scheme(scheme, settings)
    return clean, settings


@contextlib.contextmanager
def translated(what: str) -> Any:
    """Re-raise redis-py errors met while doing ``what`` as aq errors (and a
    cancellation redis-py swallowed as the cancellation it was)."""
    try:
        yield
        raise_if_cancelling()
    except (redis_errors.AuthenticationError, redis_errors.AuthorizationError) as exc:
        raise ConfigurationError(
            f"{what}: Redis refused the credentials in the broker URL ({exc})"
        ) from exc
    except CONNECTION_ERRORS as exc:
        if (problem := tls_problem(exc)) is not None:
            raise ConfigurationError(f"{what}: {tls_failure('Redis', problem, tls.PORT)}") from exc
        raise ConnectionLost(f"{what}: lost the connection to Redis ({exc})") from exc
    except redis_errors.RedisError as exc:
        raise BrokerError(f"{what}: Redis said {exc}") from exc


def retrying(what: str, operation: Callable[[], Awaitable[T]], deadline: float) -> Awaitable[T]:
    """Run ``operation``, retrying connection errors with backoff for ``deadline`` seconds
    (:func:`aq.transport.kit.retry_until` for Redis; awaited by the caller).

    Raises:
        aq.BrokerUnavailable: Redis could not be reached before the deadline.
        aq.BrokerError: Redis refused the operation.
    """
    return retry_until(
        what,
        lambda _left: operation(),
        deadline,
        translate=translated,
        server="Redis",
        log=log,
        after=raise_if_cancelling,
    )


def group_gone(exc: BaseException) -> bool:
    """Whether ``exc`` says the stream or its consumer group no longer exists."""
    text = str(exc)
    return "NOGROUP" in text or "UNBLOCKED the stream key no longer exists" in text


def raise_if_cancelling() -> None:
    """Re-raise a cancellation that redis-py swallowed.

    redis-py (8.1) loses a cancellation that arrives while a blocking command is
    still being sent: the command then runs its full block time and returns
    normally. Loops around blocking reads call this after every read, so a
    cancelled reader stops within one block period instead of never.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _socket_options(settings: RedisSettings) -> dict[str, Any]:
    """Timeouts and keepalive for every connection, whatever the kind of URL.

    Set here rather than left to redis-py, whose defaults changed in 8.0 (before
    it, no socket timeout: a read on a silently dead connection waited for ever).
    No ``health_check_interval``: a PING on a dead connection waits for the same
    socket timeout as the command it precedes, so it would notice nothing sooner
    and cost a round trip on every connection left idle.
    """
    keepalive = {
        option: value
        for name, value in _KEEPALIVE.items()
        if (option := getattr(socket, name, None)) is not None  # Linux names; some lack them
    }
    return {
        "socket_timeout": settings.socket_timeout,
        "socket_connect_timeout": _CONNECT_TIMEOUT,
        "socket_keepalive": True,
        "socket_keepalive_options": keepalive,
    }


def make_client(url: str, settings: RedisSettings) -> tuple[Redis, list[Redis]]:
    """A client for ``url`` (from :func:`parse_url`), direct or through Sentinel, and
    the clients of the sentinels themselves (to close along with it).

    Direct connections use a blocking pool, so a burst of callers waits for a
    free connection instead of failing with "Too many connections"; for
    ``rediss://`` URLs the TLS files are read here, so a bad one fails start-up
    (:class:`aq.ConfigurationError`). Sentinel URLs
    look like ``redis+sentinel://[:password@]host:port[,host:port...]/service[/db]``;
    the password (if any) is used for the master and the sentinels alike.
    """
    if url.startswith("redis+cluster://"):
        return _cluster_client(url, settings), []
    options = _socket_options(settings)
    if not url.startswith("redis+sentinel://"):
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=settings.max_connections,
            timeout=None,
            **options,
            **tls.client_options(settings),
        )
        if url.startswith("rediss://"):
            tls.check_files(pool.connection_kwargs)
        return Redis.from_pool(pool), []  # the client owns the pool and closes it
    parts = urlsplit(url)
    password, nodes = _nodes(parts.netloc)
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ConfigurationError(
            "a redis+sentinel:// URL needs the service name: "
            "redis+sentinel://host:26379/mymaster[/db]"
        )
    db = int(path[1]) if len(path) > 1 and path[1].isdigit() else 0
    sentinel: Any = Sentinel(  # type: ignore[no-untyped-call]
        nodes,
        sentinel_kwargs={"password": password, **options},
        password=password,
        db=db,
        **options,
    )
    # Sentinel pools do not block when full: allow far more connections than the
    # blocking pool, which the batcher's pipelines rarely need.
    client: Redis = sentinel.master_for(path[0], max_connections=settings.max_connections * 16)
    return client, list(sentinel.sentinels)


def _nodes(netloc: str) -> tuple[str | None, list[tuple[str, int]]]:
    """(password, [(host, port), ...]) from ``[:password@]host:port[,host:port...]``."""
    auth, _, hosts = netloc.rpartition("@")
    password = (unquote(auth.partition(":")[2]) or None) if auth else None
    nodes = []
    for node in hosts.split(","):
        host, _, port = node.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigurationError(f"invalid address {node!r}: write HOST:PORT[,HOST:PORT...]")
        nodes.append((host.strip("[]"), int(port)))
    return password, nodes


def _cluster_client(url: str, settings: RedisSettings) -> Redis:
    """``redis+cluster://[:password@]host:port[,host:port...]``: a Redis Cluster client."""
    password, nodes = _nodes(urlsplit(url).netloc)
    client: Any = RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in nodes],
        password=password,
        max_connections=settings.max_connections * 16,
        **_socket_options(settings),
    )
    return client  # type: ignore[no-any-return]

"""TLS to Redis: the URL options that set it up, and its mistakes told from outages.

``rediss://`` URLs take the TLS options the RabbitMQ transport takes, by the
same names: ``cafile`` (the CA that signed the server's certificate; the
system's CAs when absent), ``capath``, ``certfile`` and ``keyfile`` (a client
certificate, for a server started with ``tls-auth-clients yes``) and
``no_verify_ssl=1`` (trust any certificate: tests only). They become
redis-py's ``ssl_ca_certs``, ``ssl_ca_path``, ``ssl_certfile``,
``ssl_keyfile`` and ``ssl_cert_reqs``; redis-py's own ``ssl_*`` names in the
query string reach it unchanged. Other schemes refuse them: aq connects to
Sentinel and Cluster without TLS.

A TLS mistake never fixes itself, so it fails start-up at once with
:class:`aq.ConfigurationError` instead of being retried as an outage: the
files are read before the first connection (:func:`check_files`), a handshake
refused over certificates is found by :func:`aq.transport.kit.tls.tls_problem`,
and three mistakes that look like outages from the client's side are told
apart by asking the port (:func:`explained`): TLS spoken to Redis's plain port
(Redis waits for a line that never comes, so the handshake times out), plain
Redis spoken to its ``tls-port`` (the server drops the connection), and a
client certificate missing or refused under TLS 1.3, where the server checks it
only after the handshake and its alert can be overtaken by the reset that
answers the client's first command (the probe sends nothing, and reads the
alert).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from redis import exceptions as redis_errors

from aq.errors import ConfigurationError
from aq.transport.kit.tls import tls_failure, tls_problem

if TYPE_CHECKING:
    from aq.transport.redis.connection import RedisSettings

__all__ = [
    "PORT",
    "check_files",
    "check_flag",
    "check_path",
    "check_scheme",
    "client_options",
    "explained",
]

T = TypeVar("T")

#: What Redis calls its TLS port, for error messages.
PORT = "Redis's tls-port"

#: aq's name of each file option, and redis-py's.
_FILES = {
    "cafile": "ssl_ca_certs",
    "capath": "ssl_ca_path",
    "certfile": "ssl_certfile",
    "keyfile": "ssl_keyfile",
}
#: How long asking a port which protocol it speaks may take.
_PROBE_TIMEOUT = 1.0


def check_path(value: str) -> str | None:
    """The check of a file option."""
    return None if value else "give a path"


def check_flag(value: int) -> str | None:
    """The check of ``no_verify_ssl``."""
    return None if value in (0, 1) else "use 1 (trust any certificate) or 0 (the default)"


def check_scheme(scheme: str, settings: RedisSettings) -> None:
    """Refuse TLS options on a URL that is not ``rediss://``.

    Raises:
        aq.ConfigurationError: naming the options and what to use instead.
    """
    given = [name for name in _FILES if getattr(settings, name) is not None]
    given += ["no_verify_ssl"] if settings.no_verify_ssl else []
    if not given or scheme == "rediss":
        return
    where = (
        "use a rediss:// URL for TLS"
        if scheme == "redis"
        else f"aq connects to Redis through {scheme}:// without TLS"
    )
    verb = "applies" if len(given) == 1 else "apply"
    raise ConfigurationError(
        f"{', '.join(given)} in the broker URL {verb} to rediss:// URLs only: {where}"
    )


def client_options(settings: RedisSettings) -> dict[str, Any]:
    """redis-py's keyword arguments for the TLS options in ``settings``."""
    options = {_FILES[name]: path for name in _FILES if (path := getattr(settings, name))}
    if settings.no_verify_ssl:
        options["ssl_cert_reqs"] = "none"  # which turns off the host name check too
    return options


def _refuse_password(*_: object) -> bytes:
    raise ConfigurationError(
        "connect: the TLS key in the broker URL is encrypted: give its passphrase as "
        "ssl_password, or use an unencrypted key"
    )


def check_files(connection: Mapping[str, Any]) -> None:
    """Read the TLS files that redis-py's ``connection`` keyword arguments name, as
    redis-py will at each connection, so a missing or unusable one fails now,
    naming it (and an encrypted key without its passphrase fails rather than
    prompting on the terminal).

    Raises:
        aq.ConfigurationError: a file cannot be read or used.
    """
    paths = {name: connection.get(key) for name, key in _FILES.items()}
    for name, path in paths.items():
        if path is None:
            continue
        try:
            if name == "capath":
                os.listdir(path)
            else:
                with open(path, "rb"):
                    pass
        except OSError as exc:
            raise ConfigurationError(
                f"connect: cannot read the TLS file {name}={path} in the broker URL: "
                f"{exc.strerror or exc}"
            ) from exc
    if paths["keyfile"] and not paths["certfile"]:
        raise ConfigurationError("connect: keyfile in the broker URL needs certfile too")
    context = ssl.create_default_context()
    try:
        if paths["certfile"]:
            password = connection.get("ssl_password") or _refuse_password
            context.load_cert_chain(paths["certfile"], paths["keyfile"], password=password)
        if paths["cafile"] or paths["capath"]:
            context.load_verify_locations(paths["cafile"], paths["capath"])
    except ssl.SSLError as exc:
        raise ConfigurationError(
            f"connect: TLS with Redis failed: cannot use the certificate, key or CA files "
            f"in the broker URL ({exc})"
        ) from exc


async def explained(url: str, settings: RedisSettings, attempt: Awaitable[T]) -> T:
    """``await attempt`` (the first connection of a client for ``url``); if it fails
    as a TLS mistake would, ask the port which protocol it speaks, and what it
    thinks of the client's certificate.

    Raises:
        aq.ConfigurationError: the port speaks the other protocol, or refuses the
            TLS set-up in the URL.
    """
    try:
        return await attempt
    except (redis_errors.ConnectionError, redis_errors.TimeoutError) as exc:
        if _worth_asking(exc):
            problem = await _mismatch(url, settings)
            if problem is not None:
                raise ConfigurationError(f"connect: {problem}") from exc
        raise


def _worth_asking(exc: BaseException) -> bool:
    """Whether ``exc`` may hide a TLS mismatch: not a refusal (nothing listens), and
    not an error that already says what is wrong."""
    if isinstance(exc, redis_errors.AuthenticationError) or tls_problem(exc) is not None:
        return False
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError):
            return False
        seen = seen.__cause__ or seen.__context__
    return True


async def _mismatch(url: str, settings: RedisSettings) -> str | None:
    """What is wrong if the port in ``url`` speaks the other protocol, or refuses
    the TLS set-up in ``settings``; else None."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        return None  # unix sockets, and Sentinel and Cluster, which aq runs without TLS
    host, port = parts.hostname or "localhost", parts.port or 6379
    if parts.scheme == "rediss" and await _answers_plain_redis(host, port):
        return (
            f"TLS with Redis failed: {host}:{port} answers in plain text, so it is not "
            "Redis's TLS port (tls-port): give that port, or a redis:// URL for this one"
        )
    if parts.scheme == "rediss":
        alert = await _alert_after_handshake(host, port, settings)
        if alert is not None:
            return tls_failure("Redis", alert, PORT)
    if parts.scheme == "redis" and await _speaks_tls(host, port):
        return (
            f"{host}:{port} speaks TLS (it is Redis's tls-port): use a rediss:// URL, "
            "with cafile= naming the CA that signed the server's certificate"
        )
    return None


async def _answers_plain_redis(host: str, port: int) -> bool:
    """Whether ``host:port`` answers a plain-text PING as Redis does (``+PONG``, or an
    error such as ``-NOAUTH``)."""
    try:
        async with asyncio.timeout(_PROBE_TIMEOUT):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(b"PING\r\n")
                first = await reader.read(1)
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except (OSError, TimeoutError):
        return False
    return first in (b"+", b"-")


async def _speaks_tls(host: str, port: int) -> bool:
    """Whether a TLS handshake with ``host:port`` completes (trusting any certificate:
    this only asks which protocol the port speaks)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        async with asyncio.timeout(_PROBE_TIMEOUT):
            _, writer = await asyncio.open_connection(host, port, ssl=context)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    except (OSError, TimeoutError):
        return False
    return True


async def _alert_after_handshake(
    host: str, port: int, settings: RedisSettings
) -> BaseException | None:
    """The TLS set-up error ``host:port`` reports once a handshake with the URL's
    TLS settings completes (how a TLS 1.3 server refuses a client certificate,
    or the lack of one), read without sending anything; None if it says nothing."""
    try:
        context = ssl.create_default_context(cafile=settings.cafile, capath=settings.capath)
        if settings.certfile:
            context.load_cert_chain(settings.certfile, settings.keyfile)
    except (OSError, ValueError):  # an encrypted key, say: check_files speaks of it
        return None
    context.check_hostname = False  # as redis-py, unless told otherwise
    if settings.no_verify_ssl:
        context.verify_mode = ssl.CERT_NONE
    try:
        async with asyncio.timeout(_PROBE_TIMEOUT):
            reader, writer = await asyncio.open_connection(host, port, ssl=context)
            try:
                await reader.read(1)  # nothing comes from a server content with us
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except TimeoutError:
        return None
    except OSError as exc:
        return tls_problem(exc)
    return None

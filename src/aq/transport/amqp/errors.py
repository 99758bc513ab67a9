"""The translation of aio-pika and aiormq errors into aq's tree, and retrying.

Nothing from the AMQP libraries may reach user code: a refused login or
virtual host becomes :class:`aq.ConfigurationError` (it will not fix itself),
a queue declared elsewhere with other arguments becomes one too, connection
trouble becomes :class:`aq.ConnectionLost` (or :class:`aq.BrokerUnavailable`
once a deadline passes), and anything else :class:`aq.BrokerError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import aiormq.exceptions as amqp_errors

from aq.errors import BrokerError, ConfigurationError, ConnectionLost
from aq.transport.kit import retry_until
from aq.transport.kit.tls import tls_failure, tls_problem

__all__ = ["CONNECTION_ERRORS", "Unroutable", "retrying", "translated"]

log = logging.getLogger("aq.amqp")
T = TypeVar("T")

#: Errors after which the same operation may succeed on a new connection.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    amqp_errors.AMQPConnectionError,
    amqp_errors.ChannelInvalidStateError,
    ConnectionError,
    OSError,
    TimeoutError,
)

_PORT = "RabbitMQ's TLS listener"  # for messages


class Unroutable(BrokerError):
    """A mandatory message came back, or its exchange is missing: someone deleted
    what this process had declared."""


@contextlib.contextmanager
def translated(what: str) -> Iterator[None]:
    """Re-raise AMQP errors met while doing ``what`` as aq errors."""
    try:
        yield
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        # Only the TLS files named in the URL are opened by the client library.
        raise ConfigurationError(
            f"{what}: cannot read a TLS file named in the broker URL: {exc}"
        ) from exc
    except ssl.SSLError as exc:
        raise ConfigurationError(f"{what}: {tls_failure('RabbitMQ', exc, _PORT)}") from exc
    except (amqp_errors.AuthenticationError, amqp_errors.ProbableAuthenticationError) as exc:
        raise ConfigurationError(
            f"{what}: RabbitMQ refused the credentials in the broker URL ({exc})"
        ) from exc
    except amqp_errors.InvalidFrameError as exc:
        if "Connection.Close" not in str(exc):  # the server's answer to opening the connection
            raise BrokerError(f"{what}: RabbitMQ said {exc}") from exc
        raise ConfigurationError(
            f"{what}: RabbitMQ closed the connection while opening it: the virtual host in "
            "the broker URL does not exist, or this user may not use it"
        ) from exc
    except amqp_errors.ConnectionNotAllowed as exc:
        raise ConfigurationError(
            f"{what}: RabbitMQ refused access to the virtual host in the broker URL "
            f"(does it exist, and may this user use it?) ({exc})"
        ) from exc
    except amqp_errors.ChannelAccessRefused as exc:
        raise ConfigurationError(
            f"{what}: the RabbitMQ user lacks a permission: {exc.args[-1] if exc.args else exc}"
        ) from exc
    except amqp_errors.ChannelPreconditionFailed as exc:
        raise ConfigurationError(
            f"{what}: RabbitMQ refused: {exc.args[-1] if exc.args else exc} (a queue of that "
            "name exists with other settings, such as another queue_type; delete it or use "
            "another prefix)"
        ) from exc
    except amqp_errors.PublishError as exc:
        raise Unroutable(f"{what}: RabbitMQ has no queue to route the message to") from exc
    except amqp_errors.ChannelNotFoundEntity as exc:
        raise Unroutable(f"{what}: RabbitMQ has no such exchange or queue ({exc})") from exc
    except CONNECTION_ERRORS as exc:
        if (problem := tls_problem(exc)) is not None:
            raise ConfigurationError(f"{what}: {tls_failure('RabbitMQ', problem, _PORT)}") from exc
        raise ConnectionLost(f"{what}: lost the connection to RabbitMQ ({exc!r})") from exc
    except amqp_errors.AMQPError as exc:
        raise BrokerError(f"{what}: RabbitMQ said {exc}") from exc


def _raise_if_cancelled() -> None:
    """Re-raise a cancellation meant for the current task."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def retrying(what: str, operation: Callable[[float], Awaitable[T]], deadline: float) -> T:
    """Run ``operation(seconds_left)``, retrying connection errors for ``deadline`` seconds.

    Each attempt is bounded by the time left, so one that hangs (a publish whose
    confirm never comes because the connection died) cannot outlast the deadline.

    Raises:
        aq.BrokerUnavailable: RabbitMQ could not be reached before the deadline.
        aq.BrokerError: RabbitMQ refused the operation.
    """

    async def bounded(left: float) -> T:
        async with asyncio.timeout(left):
            try:
                return await operation(left)
            except asyncio.CancelledError as exc:
                _raise_if_cancelled()
                # aiormq fails what waits on a connection it found dead (its
                # heartbeat went silent) with CancelledError: a lost connection.
                raise ConnectionError("the connection was found dead") from exc

    return await retry_until(
        what, bounded, deadline, translate=translated, server="RabbitMQ", log=log, most=1.0
    )

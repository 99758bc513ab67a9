"""aq's options for the RabbitMQ transport, read from the broker URL.

aq's own options ride in the URL's query string and are removed before the URL
reaches aio-pika, which keeps its own (``heartbeat``, ``cafile``,
``certfile``, ``keyfile``, ``no_verify_ssl``, ``name`` ...). One
``AQ_BROKER_URL`` says everything::

    amqps://app:secret@mq.internal:5671/prod?queue_type=quorum&cafile=/etc/ca.pem

The virtual host is the URL's path (``/`` when empty; ``%2F`` for a vhost
literally named ``/``). Errors in these options are reported at construction,
naming the option and what it accepts.

aq gives aio-pika two defaults of its own unless the URL says otherwise:
``reconnect_interval`` (1 s) and ``heartbeat`` (5 s). aiormq sends its own
heartbeat value to the server, whatever the server proposes, and declares a
connection dead once no frame has arrived for ``3 * (heartbeat + 1)`` seconds,
which it checks every ``heartbeat // 2`` seconds (at least 1). With 5 a
connection that silently stops passing packets is noticed within 20 s; with
aiormq's own default, 60, it took over three minutes. RabbitMQ advises against
values below 5 (false alarms). ``heartbeat`` is checked here, since aiormq
turns a value it cannot read into 0, which disables heartbeats.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from aq.errors import ConfigurationError
from aq.transport.kit import CommonSettings, read_options, redact_url
from aq.transport.kit.options import option

__all__ = ["QUEUE_TYPES", "AmqpSettings", "parse_url"]

QUEUE_TYPES = ("classic", "quorum")
_RECONNECT_INTERVAL = "1"  # aio-pika waits 5 s between reconnection attempts by default
_HEARTBEAT = "5"  # see the module docstring
_MAX_HEARTBEAT = 65534  # aiormq treats larger values as 0: no heartbeats


def _check_queue_type(value: str) -> str | None:
    return None if value in QUEUE_TYPES else "use 'classic' (the default) or 'quorum'"


@dataclass(frozen=True, slots=True)
class AmqpSettings(CommonSettings):
    """aq's options for the RabbitMQ transport (besides those of
    :class:`~aq.transport.kit.CommonSettings`; ``publish_timeout`` is 30 s here by
    default: longer than a silent partition takes to notice and reconnect).

    Attributes:
        queue_type: ``classic`` (the default; supports priorities) or
            ``quorum`` (replicated, for clusters; no priorities in RabbitMQ 3.x).
            Quorum queues are declared with ``max_deliveries`` as their
            ``x-delivery-limit``, a backstop the crash policy never reaches first.
        consumer_timeout: the server's ``consumer_timeout``, in seconds, which
            RabbitMQ 3.10 does not report: it closes the channel of a consumer
            that holds a delivery longer and redelivers what it held. A worker
            refuses to start with a task whose timeout is longer (1800, RabbitMQ's
            default, unless the URL says otherwise).
    """

    publish_timeout: float = option(30.0)
    queue_type: str = option("classic", _check_queue_type)
    consumer_timeout: float = option(1800.0)


def parse_url(url: str, overrides: Mapping[str, Any] | None = None) -> tuple[str, AmqpSettings]:
    """Split ``url`` into the URL for aio-pika and aq's settings.

    ``overrides`` (from ``aq.Broker(..., queue_type=...)``) win over the query string.

    Raises:
        aq.ConfigurationError: an aq option has an invalid value, or the URL is
            not an AMQP URL.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("amqp", "amqps"):
        raise ConfigurationError(f"not an AMQP URL: {redact_url(url)!r}")
    if not parts.hostname:
        raise ConfigurationError(
            f"the broker URL {redact_url(url)!r} names no host: "
            "write amqp://user:password@host:5672/vhost"
        )
    clean, settings = read_options(url, AmqpSettings, overrides)
    parts = urlsplit(clean)
    kept = parse_qsl(parts.query, keep_blank_values=True)
    if not any(key == "reconnect_interval" for key, _ in kept):
        kept.append(("reconnect_interval", _RECONNECT_INTERVAL))
    heartbeats = [value for key, value in kept if key == "heartbeat"]
    for value in heartbeats:
        _check_heartbeat(value)
    if not heartbeats:
        kept.append(("heartbeat", _HEARTBEAT))
    return urlunsplit(parts._replace(query=urlencode(kept))), settings


def _check_heartbeat(value: str) -> None:
    if not (value.isascii() and value.isdigit() and int(value) <= _MAX_HEARTBEAT):
        raise ConfigurationError(
            f"invalid heartbeat={value!r} in the broker URL: give whole seconds from 0 "
            f"(no heartbeats: a silent network partition goes unnoticed) to {_MAX_HEARTBEAT}; "
            f"the default is {_HEARTBEAT}"
        )

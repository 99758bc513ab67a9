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
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from aq.errors import ConfigurationError

__all__ = ["QUEUE_TYPES", "AmqpSettings", "parse_url"]

QUEUE_TYPES = ("classic", "quorum")
_RECONNECT_INTERVAL = "1"  # aio-pika waits 5 s between reconnection attempts by default
_HEARTBEAT = "5"  # see the module docstring
_MAX_HEARTBEAT = 65534  # aiormq treats larger values as 0: no heartbeats


@dataclass(frozen=True, slots=True)
class AmqpSettings:
    """aq's options for the RabbitMQ transport.

    Attributes:
        prefix: the first part of every queue and exchange name, to share one
            virtual host between apps.
        queue_type: ``classic`` (the default; supports priorities) or
            ``quorum`` (replicated, for clusters; no priorities in RabbitMQ 3.x).
        publish_timeout: seconds ``kiq()`` keeps retrying during an outage (30 by
            default: longer than a silent partition takes to notice and reconnect)
            before it raises :class:`aq.BrokerUnavailable`.
        reply_ttl: seconds a producer's reply queue outlives the producer.
        max_deliveries: a task that has crashed its worker this many times, the
            last while running alone, is dead-lettered (see aq.worker.crashes);
            at least 2. Quorum queues are declared with it as their
            ``x-delivery-limit``, a backstop the crash policy never reaches first.
        consumer_timeout: the server's ``consumer_timeout``, in seconds, which
            RabbitMQ 3.10 does not report: it closes the channel of a consumer
            that holds a delivery longer and redelivers what it held. A worker
            refuses to start with a task whose timeout is longer (1800, RabbitMQ's
            default, unless the URL says otherwise).
    """

    prefix: str = "aq"
    queue_type: str = "classic"
    publish_timeout: float = 30.0
    reply_ttl: float = 300.0
    max_deliveries: int = 10
    consumer_timeout: float = 1800.0


_NUMBERS = {
    "publish_timeout": float,
    "reply_ttl": float,
    "max_deliveries": int,
    "consumer_timeout": float,
}


def parse_url(url: str, overrides: Mapping[str, Any] | None = None) -> tuple[str, AmqpSettings]:
    """Split ``url`` into the URL for aio-pika and aq's settings.

    ``overrides`` (from ``aq.Broker(..., queue_type=...)``) win over the query string.

    Raises:
        aq.ConfigurationError: an aq option has an invalid value, or the URL is
            not an AMQP URL.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("amqp", "amqps"):
        raise ConfigurationError(f"not an AMQP URL: {url!r}")
    if not parts.hostname:
        raise ConfigurationError(
            f"the broker URL {url!r} names no host: write amqp://user:password@host:5672/vhost"
        )
    ours = {f.name for f in fields(AmqpSettings)}
    kept: list[tuple[str, str]] = []
    given: dict[str, Any] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in ours:
            given[key] = value
        else:
            kept.append((key, value))
    for key, value in (overrides or {}).items():
        if key not in ours:
            raise ConfigurationError(f"unknown RabbitMQ option {key!r}")
        if value is not None:
            given[key] = value
    values = {key: _parse(key, value) for key, value in given.items()}
    if not any(key == "reconnect_interval" for key, _ in kept):
        kept.append(("reconnect_interval", _RECONNECT_INTERVAL))
    heartbeats = [value for key, value in kept if key == "heartbeat"]
    for value in heartbeats:
        _check_heartbeat(value)
    if not heartbeats:
        kept.append(("heartbeat", _HEARTBEAT))
    clean = urlunsplit(parts._replace(query=urlencode(kept)))
    return clean, AmqpSettings(**values)


def _check_heartbeat(value: str) -> None:
    if not (value.isascii() and value.isdigit() and int(value) <= _MAX_HEARTBEAT):
        raise ConfigurationError(
            f"invalid heartbeat={value!r} in the broker URL: give whole seconds from 0 "
            f"(no heartbeats: a silent network partition goes unnoticed) to {_MAX_HEARTBEAT}; "
            f"the default is {_HEARTBEAT}"
        )


def _parse(key: str, value: Any) -> Any:
    if key == "queue_type":
        if value not in QUEUE_TYPES:
            raise ConfigurationError(
                f"invalid queue_type={value!r}: use 'classic' (the default) or 'quorum'"
            )
        return value
    if key == "prefix":
        text = str(value)
        if not text or any(c in text for c in "*#"):
            raise ConfigurationError(
                f"invalid prefix={value!r}: it must be non-empty and contain no '*' or '#'"
            )
        return text
    kind = _NUMBERS[key]
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"invalid {key}={value!r} in the broker URL") from None
    if number <= 0:
        raise ConfigurationError(f"{key} in the broker URL must be positive, not {value!r}")
    if key == "max_deliveries" and number < 2:
        raise ConfigurationError(
            f"max_deliveries={value} in the broker URL: it must be at least 2, since a crash "
            "is blamed on a task only once it has crashed a worker while running alone"
        )
    return number

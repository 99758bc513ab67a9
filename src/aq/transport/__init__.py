"""Transports, chosen by URL scheme and imported only when used.

``create_transport("redis://...")`` imports the Redis module only then, so a
missing optional dependency is reported as "install aq-tasks[redis]" at
start-up instead of an ImportError from deep inside a stack.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from aq.errors import ConfigurationError
from aq.transport.base import Consumer, DeadLetter, Delivery, Inbox, QueueStats, Transport

__all__ = [
    "Consumer",
    "DeadLetter",
    "Delivery",
    "Inbox",
    "QueueStats",
    "Transport",
    "create_transport",
]

# scheme -> (module, class, extra that provides its client library)
_SCHEMES: dict[str, tuple[str, str, str | None]] = {
    "memory": ("aq.transport.memory", "MemoryTransport", None),
    "redis": ("aq.transport.redis", "RedisTransport", "redis"),
    "rediss": ("aq.transport.redis", "RedisTransport", "redis"),
    "redis+sentinel": ("aq.transport.redis", "RedisTransport", "redis"),
    "redis+cluster": ("aq.transport.redis", "RedisTransport", "redis"),
    "amqp": ("aq.transport.amqp", "AmqpTransport", "amqp"),
    "amqps": ("aq.transport.amqp", "AmqpTransport", "amqp"),
}
#: Options a transport takes from ``aq.Broker(...)`` besides its URL.
_OPTIONS: dict[str, frozenset[str]] = {"aq.transport.amqp": frozenset({"queue_type"})}


def create_transport(url: str, options: Mapping[str, Any] | None = None) -> Transport:
    """Build the transport for ``url`` (not yet connected).

    Args:
        url: the broker URL.
        options: transport options given to ``aq.Broker`` (such as RabbitMQ's
            ``queue_type``); ``None`` values are ignored.

    Raises:
        aq.ConfigurationError: the URL is malformed, its scheme unknown, the
            client library for it is not installed, or an option does not apply.
    """
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(
            f"invalid broker URL {url!r}: expected SCHEME://..., for example "
            "'memory://', 'redis://127.0.0.1:6379/0' or 'amqp://guest:guest@127.0.0.1/'"
        )
    scheme = urlsplit(url).scheme.lower()
    if scheme not in _SCHEMES:
        known = ", ".join(f"{s}://" for s in sorted(_SCHEMES))
        raise ConfigurationError(
            f"unknown broker URL scheme {scheme!r} in {url!r}; use one of {known}"
        )
    module_name, class_name, extra = _SCHEMES[scheme]
    given = {k: v for k, v in (options or {}).items() if v is not None}
    for key in given:
        if key not in _OPTIONS.get(module_name, frozenset()):
            raise ConfigurationError(f"the {key} option does not apply to {scheme}:// brokers")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"the {scheme}:// transport needs an optional dependency ({exc.name}): "
            f"pip install 'aq-tasks[{extra}]'"
        ) from exc
    cls = getattr(module, class_name)
    transport: Transport = cls(url, given) if given else cls(url)
    return transport

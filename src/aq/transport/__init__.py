"""Transports, chosen by URL scheme and imported only when used.

``create_transport("redis://...")`` imports the Redis module only then, so a
missing optional dependency is reported as "install aq-tasks[redis]" at
start-up instead of an ImportError from deep inside a stack.
"""

from __future__ import annotations

import importlib
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
}
_PLANNED = {"amqp", "amqps"}


def create_transport(url: str) -> Transport:
    """Build the transport for ``url`` (not yet connected).

    Raises:
        aq.ConfigurationError: the URL is malformed, its scheme unknown, or the
            client library for it is not installed.
    """
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(
            f"invalid broker URL {url!r}: expected SCHEME://..., for example "
            "'memory://', 'redis://127.0.0.1:6379/0' or 'amqp://guest:guest@127.0.0.1/'"
        )
    scheme = urlsplit(url).scheme.lower()
    if scheme in _PLANNED and scheme not in _SCHEMES:
        raise ConfigurationError(
            f"the {scheme}:// transport is not part of this aq release yet; use 'memory://'"
        )
    if scheme not in _SCHEMES:
        known = ", ".join(f"{s}://" for s in sorted(_SCHEMES))
        raise ConfigurationError(
            f"unknown broker URL scheme {scheme!r} in {url!r}; use one of {known}"
        )
    module_name, class_name, extra = _SCHEMES[scheme]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"the {scheme}:// transport needs an optional dependency ({exc.name}): "
            f"pip install 'aq-tasks[{extra}]'"
        ) from exc
    transport: Transport = getattr(module, class_name)(url)
    return transport

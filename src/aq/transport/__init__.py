"""Backends, chosen by URL scheme and imported only when used.

A backend is a :class:`Transport` (messages, replies, control) with its
:class:`Admin` (queue administration) and, when its server can keep state by
key, a :class:`Store`. ``create_transport("redis://...")`` imports the Redis
module only then, so a missing optional dependency is reported as "install
aq-tasks[redis]" at start-up instead of an ImportError from deep inside a stack.

Schemes of other packages are registered with :func:`register_transport` and
:func:`register_store`, or declared in the ``aq.transports`` and ``aq.stores``
entry-point groups (``scheme = "package.module:Class"``), which are read the
first time an unknown scheme is asked for.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aq.errors import ConfigurationError
from aq.transport.admin import Admin, DeadLetter, QueueStats
from aq.transport.base import Consumer, Delivery, Inbox, Transport
from aq.transport.election import Election
from aq.transport.kit import redact_url
from aq.transport.store import Lease, RateDecision, SlotTurn, Store

__all__ = [
    "Admin",
    "Consumer",
    "DeadLetter",
    "Delivery",
    "Election",
    "Inbox",
    "Lease",
    "QueueStats",
    "RateDecision",
    "SlotTurn",
    "Store",
    "Transport",
    "create_store",
    "create_transport",
    "register_store",
    "register_transport",
    "transport_for",
]

#: Builds a transport or a store from its URL and the options given to aq.Broker.
Factory = Callable[[str, Mapping[str, Any]], Any]


@dataclass(frozen=True, slots=True)
class _Backend:
    """Where a scheme's class lives: ``module:attribute``, or the factory itself."""

    target: str | Factory
    #: The optional dependency (``aq-tasks[extra]``) that provides its client.
    extra: str | None = None

    def load(self, scheme: str) -> Factory:
        if not isinstance(self.target, str):
            return self.target
        module_name, _, name = self.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            hint = f"pip install 'aq-tasks[{self.extra}]'" if self.extra else "is it installed?"
            raise ConfigurationError(
                f"the {scheme}:// backend needs a package that is missing ({exc.name}): {hint}"
            ) from exc
        factory: Factory = getattr(module, name)
        return factory


_REDIS = _Backend("aq.transport.redis:RedisTransport", "redis")
_TRANSPORTS: dict[str, _Backend] = {
    "memory": _Backend("aq.transport.memory:MemoryTransport"),
    "redis": _REDIS,
    "rediss": _REDIS,
    "redis+sentinel": _REDIS,
    "redis+cluster": _REDIS,
    "amqp": _Backend("aq.transport.amqp:AmqpTransport", "amqp"),
    "amqps": _Backend("aq.transport.amqp:AmqpTransport", "amqp"),
}
_REDIS_STORE = _Backend("aq.transport.redis:RedisStore", "redis")
_STORES: dict[str, _Backend] = {
    "memory": _Backend("aq.transport.memory:MemoryStore"),
    "redis": _REDIS_STORE,
    "rediss": _REDIS_STORE,
    "redis+sentinel": _REDIS_STORE,
    "redis+cluster": _REDIS_STORE,
}
_loaded_entry_points: set[str] = set()


def register_transport(scheme: str, factory: str | Factory, *, extra: str | None = None) -> None:
    """Make ``scheme://`` URLs build transports with ``factory``.

    Args:
        scheme: the URL scheme, lower case.
        factory: a callable ``(url, options) -> Transport``, or where to import
            one from: ``"package.module:Class"`` (imported on first use).
        extra: the optional dependency to name if that import fails.
    """
    _TRANSPORTS[scheme.lower()] = _Backend(factory, extra)


def register_store(scheme: str, factory: str | Factory, *, extra: str | None = None) -> None:
    """Make ``scheme://`` URLs given as ``aq.Broker(store=...)`` build stores with
    ``factory`` (a callable ``(url, options) -> Store``, or ``"module:Class"``)."""
    _STORES[scheme.lower()] = _Backend(factory, extra)


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
    transport = _build("broker", _TRANSPORTS, "aq.transports", url, options)
    if not isinstance(transport, Transport):
        raise ConfigurationError(
            f"the backend for {redact_url(url)!r} built {transport!r}, not a Transport"
        )
    return transport


def create_store(url: str, options: Mapping[str, Any] | None = None) -> Store:
    """Build the store for ``url`` (not yet connected); see :func:`create_transport`."""
    store = _build("store", _STORES, "aq.stores", url, options)
    if not isinstance(store, Store):
        raise ConfigurationError(
            f"the backend for {redact_url(url)!r} built {store!r}, not a Store"
        )
    return store


def _build(
    what: str,
    registry: dict[str, _Backend],
    group: str,
    url: str,
    options: Mapping[str, Any] | None,
) -> Any:
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(
            f"invalid {what} URL {_shown(url)}: expected SCHEME://..., for example "
            "'memory://', 'redis://127.0.0.1:6379/0' or 'amqp://guest:guest@127.0.0.1/'"
        )
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError as exc:  # an unbalanced "[" in the host, say
        raise ConfigurationError(f"invalid {what} URL {_shown(url)}: {exc}") from None
    if scheme not in registry:
        _load_entry_points(group, registry)
    if scheme not in registry:
        known = ", ".join(f"{s}://" for s in sorted(registry))
        raise ConfigurationError(
            f"unknown {what} URL scheme {scheme!r} in {redact_url(url)!r}; use one of {known}"
        )
    factory = registry[scheme].load(scheme)
    given = {k: v for k, v in (options or {}).items() if v is not None}
    return factory(url, given)


def _shown(url: object) -> str:
    """``url`` as an error message may show it: without its password."""
    return repr(redact_url(url)) if isinstance(url, str) else repr(url)


def _load_entry_points(group: str, registry: dict[str, _Backend]) -> None:
    """Register the schemes other packages declare in entry-point ``group``, once."""
    if group in _loaded_entry_points:
        return
    _loaded_entry_points.add(group)
    for entry in importlib.metadata.entry_points(group=group):
        registry.setdefault(entry.name.lower(), _Backend(entry.value))


#: The environment variable whose broker URL takes precedence over the code's.
ENV_URL = "AQ_BROKER_URL"


def transport_for(given: Transport | str | None, queue_type: str | None) -> Transport:
    """The transport for ``aq.Broker``: an object as given, else built from the URL,
    ``AQ_BROKER_URL`` taking precedence over a URL passed in code.

    Raises:
        aq.ConfigurationError: no URL anywhere, or ``queue_type`` with an object.
    """
    if isinstance(given, Transport):
        if queue_type is not None:
            raise ConfigurationError("queue_type applies to a broker URL, not a transport object")
        return given
    url = os.environ.get(ENV_URL) or given
    if not url:
        raise ConfigurationError(
            f"no broker URL: pass one to aq.Broker(...) or set {ENV_URL} "
            "(for example memory://, redis://127.0.0.1:6379/0, amqp://guest:guest@127.0.0.1/)"
        )
    return create_transport(url, {"queue_type": queue_type})

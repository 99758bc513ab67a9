"""aq's options in a broker URL's query string, parsed and checked in one place.

A backend's settings are a frozen dataclass that extends :class:`CommonSettings`
(the options every transport takes: ``prefix``, ``publish_timeout``,
``reply_ttl``, ``max_deliveries``) with its own. Each field may carry a check in
its metadata (``field(metadata={"check": ...})``): a function of the parsed
value that returns what is wrong with it, or ``None``. :func:`read_options`
takes aq's options out of the URL (the client library gets the rest), converts
each to its field's type, runs the checks and builds the settings, so an
invalid option fails when the broker is built, naming the option and what it
accepts.

A broker URL may hold a password, so it is never shown as given: logs, error
messages and reprs show :func:`redact_url`'s copy, with the password (in the
user part or a ``password`` query parameter) replaced by ``***``, or
:func:`url_title`'s, which names only the scheme, the hosts and the path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from aq.errors import ConfigurationError

__all__ = ["CommonSettings", "check_positive", "read_options", "redact_url", "url_title"]

S = TypeVar("S", bound="CommonSettings")

#: Query parameters whose values are secrets: redis-py takes a ``password`` there,
#: and ``ssl_password`` unlocks a TLS key.
_SECRET_PARAMETERS = frozenset({"password", "ssl_password"})
_HIDDEN = "***"

#: A check of one option: what is wrong with the value, or None.
Check = Callable[[Any], "str | None"]


def check_positive(value: float) -> str | None:
    return None if value > 0 else "it must be positive"


def _check_prefix(value: str) -> str | None:
    if not value or any(c in value for c in "*#"):
        return "it must be non-empty and contain no '*' or '#'"
    return None


def _check_max_deliveries(value: int) -> str | None:
    if value < 2:
        return (
            "it must be at least 2, since a crash is blamed on a task only once it has "
            "crashed a worker while running alone"
        )
    return None


def option(default: Any, check: Check | None = check_positive) -> Any:
    """A settings field with ``default`` and a ``check`` run on the value parsed."""
    return dataclasses.field(default=default, metadata={"check": check})


@dataclasses.dataclass(frozen=True, slots=True)
class CommonSettings:
    """The options every transport takes.

    Attributes:
        prefix: the first part of every key or queue name, to share one server
            between apps.
        publish_timeout: seconds ``kiq()`` (and every other operation a caller
            waits for) keeps retrying during an outage before it raises
            :class:`aq.BrokerUnavailable`.
        reply_ttl: seconds a producer's reply address outlives the producer.
        max_deliveries: a task that has crashed its worker this many times, the
            last while running alone, is dead-lettered (see aq.worker.crashes);
            at least 2.
    """

    prefix: str = option("aq", _check_prefix)
    publish_timeout: float = option(10.0)
    reply_ttl: float = option(300.0)
    max_deliveries: int = option(10, _check_max_deliveries)


def read_options(
    url: str,
    settings: type[S],
    given: Mapping[str, Any] | None = None,
) -> tuple[str, S]:
    """Split ``url`` into the URL for the client library and ``settings``.

    Args:
        url: the broker URL; query parameters named like a field of ``settings``
            are aq's, the others stay in the returned URL.
        settings: the backend's settings class.
        given: options passed to ``aq.Broker(...)`` (win over the URL's).

    Raises:
        aq.ConfigurationError: an option's value is invalid, or ``given`` names
            an option the backend does not have.
    """
    parts = urlsplit(url)
    ours = {f.name: f for f in dataclasses.fields(settings)}
    kept: list[tuple[str, str]] = []
    raw: dict[str, Any] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in ours:
            raw[key] = value
        else:
            kept.append((key, value))
    for key, value in (given or {}).items():
        if key not in ours:
            raise ConfigurationError(f"the {key} option does not apply to {parts.scheme}:// URLs")
        if value is not None:
            raw[key] = value
    values = {key: _convert(ours[key], value) for key, value in raw.items()}
    clean = urlunsplit(parts._replace(query=urlencode(kept)))
    return clean, settings(**values)


def _convert(field: dataclasses.Field[Any], value: Any) -> Any:
    kind = {"int": int, "float": float}.get(str(field.type), str)
    try:
        parsed = kind(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"invalid {field.name}={value!r} in the broker URL") from None
    check: Check | None = field.metadata.get("check")
    problem = check(parsed) if check is not None else None
    if problem:
        raise ConfigurationError(f"invalid {field.name}={value!r} in the broker URL: {problem}")
    return parsed


def redact_url(url: str) -> str:
    """``url`` fit to show: the password in its user part, and the values of its
    ``password`` and ``ssl_password`` query parameters, replaced by ``***``.

    Works on every scheme aq takes, several hosts included
    (``redis+sentinel://:pw@h1:26379,h2:26379/mymaster``); a URL too malformed to
    split shows only its scheme.
    """
    try:
        parts = urlsplit(url)
    except ValueError:  # an unbalanced "[" in the host, say
        return f"{url.partition(':')[0]}://{_HIDDEN}"
    userinfo, at, hosts = parts.netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    netloc = f"{user}:{_HIDDEN}@{hosts}" if at and colon and password else parts.netloc
    query = parts.query
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(key in _SECRET_PARAMETERS for key, _ in pairs):
        query = urlencode(
            [(key, _HIDDEN if key in _SECRET_PARAMETERS else value) for key, value in pairs],
            safe="*/",
        )
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    # Put together by hand: urlunsplit drops the "//" of an empty host ("memory://").
    shown = f"{parts.scheme}://{netloc}{parts.path}"
    return shown + (f"?{query}" if query else "") + (f"#{parts.fragment}" if parts.fragment else "")


def url_title(url: str) -> str:
    """``url`` as a title names the broker: its scheme, hosts and path, without the
    user, the password or the options (several hosts included, as Sentinel and
    Cluster URLs have them)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return f"{url.partition(':')[0]}://"
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"

"""Task settings: what ``@broker.task(...)`` accepts, checked once, and the policies
it builds.

:class:`TaskOptions` is the one list of ``@broker.task`` keyword options (a
``TypedDict``, so ``broker.task`` and ``broker.register`` take them as typed
keywords without writing them out again); :func:`task_config` checks them and
builds the task's :class:`TaskConfig`. The policies those options
describe live here too, because the producer builds them and the worker
applies them: :class:`Backoff` (retry delays) and :class:`RateLimit` (parsed
from ``"100/s"`` by :func:`parse_rate_limit`). Adding a task option is adding
it to :class:`TaskOptions` and :class:`TaskConfig`, checking it in
:func:`task_config`, and reading it where it applies.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypedDict

from aq.compression import check_compression
from aq.errors import ConfigurationError
from aq.message import MAX_PRIORITY
from aq.scheduling.spec import ScheduleSpec

__all__ = [
    "UNLIMITED",
    "Backoff",
    "RateLimit",
    "TaskConfig",
    "TaskOptions",
    "check_count",
    "check_priority",
    "check_seconds",
    "parse_rate_limit",
    "task_config",
]

_UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*$")


class TaskOptions(TypedDict, total=False):
    """The keyword options of ``@broker.task(...)``.

    Attributes:
        name: the name workers know it by (default ``module.qualname``).
        queue: the queue it is sent to (default: the broker's default queue).
        timeout: seconds an attempt may run before it is cancelled with
            :class:`aq.TaskTimeout` (default: the worker's ``--default-timeout``,
            if any).
        soft_timeout: seconds after which :class:`aq.SoftTimeLimit` is raised
            inside the coroutine where it awaits, so it can clean up; shorter
            than ``timeout``. Async functions only.
        retries: how many times a failed attempt is retried before the
            message is dead-lettered; ``None``: without limit (default: the
            worker's ``--default-retries``, or 0).
        retry_on: the exceptions (classes, with their subclasses) that are
            retried; others fail at once. Default: every exception.
        dont_retry_on: exceptions that are never retried, even if ``retry_on``
            names a base class of theirs.
        retry_backoff: the first retry's delay in seconds; doubles each retry,
            with jitter (default 1).
        retry_backoff_max: the longest retry delay in seconds (default 600).
        rate_limit: at most this many starts per worker, e.g. ``"100/s"``
            (default: the worker's ``--default-rate-limit``, if any).
        max_concurrency: at most this many running at once per worker.
        priority: default priority, 0 to 9 (higher first; default 0).
        global_rate_limit: at most this many starts across every worker of the
            cluster, e.g. ``"100/s"`` (kept in the broker's store; see docs/limits.md).
        global_max_concurrency: at most this many running at once across the cluster.
        limit_key: a function of the task's arguments returning a key (a string)
            that makes the two global limits apply per key (per customer, per token).
        unique_for: seconds: while a task with the same key (by default its name
            and arguments; ``.options(unique_key=...)`` names one) is queued or
            running, another ``kiq()`` returns a handle to it instead of sending a
            second. The key frees when the task ends, or after this many seconds
            if its worker dies.
        event_data: whether monitoring events (``task-sent``, ``task-received``,
            ``task-succeeded``) carry its arguments and result; off by default,
            since they may hold secrets (docs/monitoring.md).
        compression: ``"zstd"``, ``"zlib"`` or ``"none"``: how its messages are
            compressed when large enough (default: the broker's ``compression``).
        schedule: when to call the task by itself, with no arguments:
            ``aq.every(minutes=5)`` or ``aq.cron("0 9 * * MON-FRI", tz=...)``
            (see docs/schedules.md; ``broker.schedule`` gives arguments).
    """

    name: str | None
    queue: str | None
    timeout: float | None
    soft_timeout: float | None
    retries: int | None
    retry_on: type[BaseException] | tuple[type[BaseException], ...] | None
    dont_retry_on: type[BaseException] | tuple[type[BaseException], ...] | None
    retry_backoff: float
    retry_backoff_max: float
    rate_limit: str | None
    max_concurrency: int | None
    priority: int
    global_rate_limit: str | None
    global_max_concurrency: int | None
    limit_key: Callable[..., Any] | None
    unique_for: float | None
    event_data: bool
    compression: str | None
    schedule: ScheduleSpec | None


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``count`` executions per ``period`` seconds."""

    count: float
    period: float

    @property
    def per_second(self) -> float:
        return self.count / self.period

    def __str__(self) -> str:
        unit = {1.0: "s", 60.0: "m", 3600.0: "h", 86400.0: "d"}.get(self.period)
        return f"{self.count:g}/{unit}" if unit else f"{self.count:g}/{self.period:g}s"


def parse_rate_limit(text: str) -> RateLimit:
    """Parse ``"100/s"``, ``"10/m"``, ``"5/h"``, ``"1000/d"`` or ``"3/10s"``.

    Raises:
        aq.ConfigurationError: the text is not of that form or the rate is not positive.
    """
    match = _RATE.match(text.lower())
    unit = _UNITS.get(match.group(3)) if match else None
    if match is None or unit is None:
        raise ConfigurationError(
            f"invalid rate limit {text!r}: write COUNT/UNIT such as '100/s', '10/m', '5/h', "
            "'1000/d' or '3/10s' (units: s, m, h, d)"
        )
    count = float(match.group(1))
    period = float(match.group(2) or 1) * unit
    if count <= 0 or period <= 0:
        raise ConfigurationError(f"invalid rate limit {text!r}: the rate must be positive")
    return RateLimit(count, period)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with equal jitter, in seconds.

    Attempt ``n`` (1-based, the attempt that failed) waits between half and all
    of ``min(maximum, base * 2 ** (n - 1))``.
    """

    base: float = 1.0
    maximum: float = 600.0

    def delay(self, attempt: int) -> float:
        exponent = min(max(0, attempt - 1), 64)  # beyond 2**64 every delay is the maximum
        full = min(self.maximum, self.base * 2.0**exponent)
        return full / 2 + random.uniform(0, full / 2)


def check_priority(priority: int) -> int:
    """Validate a priority (0..9, higher first)."""
    if not isinstance(priority, int) or not 0 <= priority <= MAX_PRIORITY:
        raise ConfigurationError(
            f"priority must be an int from 0 to {MAX_PRIORITY}, not {priority!r}"
        )
    return priority


def check_seconds(name: str, value: float | None) -> float | None:
    """Validate a duration in seconds: positive and finite, or None."""
    if value is not None and (
        not isinstance(value, int | float) or not math.isfinite(value) or value <= 0
    ):
        raise ConfigurationError(f"{name} must be a positive number of seconds, not {value!r}")
    return value


def check_count(name: str, value: int | None, *, least: int) -> int | None:
    """Validate a whole number of at least ``least``, or None."""
    if value is not None and (
        not isinstance(value, int) or isinstance(value, bool) or value < least
    ):
        kind = "a positive" if least == 1 else "a non-negative"
        raise ConfigurationError(f"{name} must be {kind} int, not {value!r}")
    return value


#: ``max_attempts`` of a task retried without limit (``retries=None``), here and on the wire.
UNLIMITED = 0


@dataclass(frozen=True, slots=True)
class TaskConfig:
    """A task's settings, fixed at decoration time.

    ``retries`` is ``None`` for retries without limit; ``retries_given`` says
    whether the task set it at all (if not, a worker's ``--default-retries``
    applies).
    """

    name: str
    queue: str
    timeout: float | None = None
    retries: int | None = 0
    backoff: Backoff = field(default_factory=Backoff)
    rate_limit: RateLimit | None = None
    max_concurrency: int | None = None
    priority: int = 0
    global_rate_limit: RateLimit | None = None
    global_max_concurrency: int | None = None
    limit_key: Callable[..., Any] | None = None
    unique_for: float | None = None
    event_data: bool = False
    compression: str | None = None
    soft_timeout: float | None = None
    retries_given: bool = False
    retry_on: tuple[type[BaseException], ...] | None = None
    dont_retry_on: tuple[type[BaseException], ...] = ()

    @property
    def max_attempts(self) -> int | None:
        """Attempts in all, as the message carries it: ``None`` when the task set no
        ``retries`` (the worker's default applies), :data:`UNLIMITED` without limit."""
        if not self.retries_given:
            return None
        return UNLIMITED if self.retries is None else self.retries + 1

    @property
    def cluster_limited(self) -> bool:
        """Whether a limit shared by the whole cluster applies to this task."""
        return self.global_rate_limit is not None or self.global_max_concurrency is not None


def task_config(name: str, default_queue: str, options: TaskOptions) -> TaskConfig:
    """Check ``options`` and build the settings of the task called ``name``.

    Raises:
        aq.ConfigurationError: an option is invalid (the message names it).
    """
    unknown = set(options) - set(TaskOptions.__annotations__)
    if unknown:
        raise ConfigurationError(f"unknown task option(s): {', '.join(sorted(unknown))}")
    rate_limit = options.get("rate_limit")
    global_rate = options.get("global_rate_limit")
    limit_key = options.get("limit_key")
    if limit_key is not None and not callable(limit_key):
        raise ConfigurationError(
            f"limit_key must be a function of the task's arguments, not {limit_key!r}"
        )
    global_concurrency = check_count(
        "global_max_concurrency", options.get("global_max_concurrency"), least=1
    )
    if limit_key is not None and global_rate is None and global_concurrency is None:
        raise ConfigurationError(
            "limit_key makes global_rate_limit or global_max_concurrency apply per key: "
            "give one of them too"
        )
    timeout = check_seconds("timeout", options.get("timeout"))
    soft_timeout = check_seconds("soft_timeout", options.get("soft_timeout"))
    if soft_timeout is not None and timeout is not None and soft_timeout >= timeout:
        raise ConfigurationError(
            f"soft_timeout ({soft_timeout:g} s) must be shorter than timeout ({timeout:g} s): "
            "the soft limit warns the task, the hard one stops it"
        )
    return TaskConfig(
        name=name,
        queue=options.get("queue") or default_queue,
        timeout=timeout,
        soft_timeout=soft_timeout,
        retries=check_count("retries", options.get("retries", 0), least=0),
        retries_given="retries" in options,
        retry_on=_exception_classes("retry_on", options.get("retry_on")),
        dont_retry_on=_exception_classes("dont_retry_on", options.get("dont_retry_on")) or (),
        backoff=Backoff(
            check_seconds("retry_backoff", options.get("retry_backoff", 1.0)) or 1.0,
            check_seconds("retry_backoff_max", options.get("retry_backoff_max", 600.0)) or 600.0,
        ),
        rate_limit=parse_rate_limit(rate_limit) if rate_limit is not None else None,
        max_concurrency=check_count("max_concurrency", options.get("max_concurrency"), least=1),
        priority=check_priority(options.get("priority", 0)),
        global_rate_limit=parse_rate_limit(global_rate) if global_rate is not None else None,
        global_max_concurrency=global_concurrency,
        limit_key=limit_key,
        unique_for=check_seconds("unique_for", options.get("unique_for")),
        event_data=check_flag("event_data", options.get("event_data", False)),
        compression=check_compression(options.get("compression")),
    )


def _exception_classes(
    name: str, value: type[BaseException] | tuple[type[BaseException], ...] | None
) -> tuple[type[BaseException], ...] | None:
    """Validate ``retry_on`` or ``dont_retry_on``: an exception class or a tuple of them."""
    if value is None:
        return None
    classes = value if isinstance(value, tuple) else (value,)
    for cls in classes:
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            raise ConfigurationError(
                f"{name} takes exception classes, such as {name}=(TimeoutError, "
                f"ConnectionError), not {cls!r}"
            )
    return classes


def check_flag(name: str, value: object) -> bool:
    """Validate a True/False option."""
    if not isinstance(value, bool):
        raise ConfigurationError(f"{name} must be True or False, not {value!r}")
    return value

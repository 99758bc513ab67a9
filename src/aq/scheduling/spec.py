"""When a periodic task is due: schedule specs, jitter and missed fires.

This module owns the *when* of periodic tasks and nothing else. It is pure (no
clock, no I/O, no asyncio), so every scheduler process asks it the same
questions and gets the same answers. :func:`every` builds an :class:`Every`
(a fixed interval counted from the UNIX epoch), :func:`cron` a :class:`Cron`
(a 5-field cron expression in a time zone, evaluated by the ``cronsim``
library). Both are a :class:`ScheduleSpec` giving due times as UNIX
timestamps; ``to_json`` and :func:`spec_from_json` keep them in a store.
:func:`jitter_for` delays a fire by a deterministic offset and
:func:`due_fires` decides what to fire after the scheduler was away.

Daylight saving follows Debian cron, as cronsim does:

- A job at fixed times (neither the minute nor the hour field starts with
  ``*``, e.g. ``30 2 * * *``) whose local times the spring change skips runs
  once for them, at the first instant after the jump (03:00 local); in the
  repeated autumn hour it runs once, at the first of the two instants.
- Other jobs (``0 * * * *``, ``*/15 * * * *``, ``0 */2 * * *``) follow real
  time: they fire at each matching instant that exists, so an hourly job fires
  every real hour, twice at a repeated local hour (once per UTC offset) and
  never at a skipped one.
"""

from __future__ import annotations

import abc
import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TypeGuard, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from aq.errors import ConfigurationError

__all__ = [
    "MAX_WALK",
    "MIN_INTERVAL",
    "Cron",
    "Every",
    "ScheduleSpec",
    "cron",
    "due_fires",
    "every",
    "jitter_for",
    "spec_from_json",
]

#: The most due times a cron walk visits: a cron skip count stops there (a count
#: of ``MAX_WALK`` means "at least that many"), and ``catch_up`` may not exceed it.
MAX_WALK = 10_000
#: The shortest ``every`` interval in seconds; below it float rounding merges due times.
MIN_INTERVAL = 0.001

_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_CRON_HINT = (
    "write five fields: minute (0-59) hour (0-23) day-of-month (1-31) month (1-12 or "
    "JAN-DEC) day-of-week (0-6 or SUN-SAT), such as '*/5 * * * *' or '0 9 * * MON-FRI', "
    "or @hourly, @daily, @weekly, @monthly or @yearly"
)
_UNITS = (("d", 86400.0), ("h", 3600.0), ("m", 60.0))


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_jitter(jitter: object) -> float:
    if not _is_number(jitter) or not 0 <= jitter < math.inf:
        raise ConfigurationError(
            f"jitter must be a finite number of seconds, 0 or more, not {jitter!r}"
        )
    return float(jitter)


def _seconds_text(seconds: float) -> str:
    for unit, size in _UNITS:
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


class ScheduleSpec(abc.ABC):
    """When a periodic task is due. Times are UNIX timestamps in seconds.

    Attributes:
        jitter: each fire is delayed by up to this many seconds (see :func:`jitter_for`).
    """

    __slots__ = ()
    jitter: float

    @abc.abstractmethod
    def next_after(self, t: float) -> float:
        """The first due time strictly after ``t`` (``math.inf`` if none)."""

    @abc.abstractmethod
    def previous_before(self, t: float) -> float:
        """The last due time strictly before ``t`` (``-math.inf`` if none)."""

    @abc.abstractmethod
    def count_due(self, after: float, upto: float) -> int:
        """How many due times ``d`` have ``after < d <= upto``."""

    @abc.abstractmethod
    def describe(self) -> str:
        """A short text for people, such as ``"every 30s"``."""

    @abc.abstractmethod
    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict that :func:`spec_from_json` turns back into this spec."""

    def _jitter_text(self) -> str:
        return f", jitter up to {_seconds_text(self.jitter)}" if self.jitter else ""


@dataclass(frozen=True, slots=True)
class Every(ScheduleSpec):
    """Due at every multiple of ``seconds`` since the UNIX epoch; see :func:`every`.

    Raises:
        aq.ConfigurationError: ``seconds`` is not a finite number of at least
            :data:`MIN_INTERVAL`, or ``jitter`` is invalid.
    """

    seconds: float
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if not _is_number(self.seconds) or not MIN_INTERVAL <= self.seconds < math.inf:
            raise ConfigurationError(
                f"an every() interval must be a finite number of seconds, at least "
                f"{MIN_INTERVAL:g}, not {self.seconds!r}: write every(30) or every(minutes=5)"
            )
        object.__setattr__(self, "seconds", float(self.seconds))
        object.__setattr__(self, "jitter", _check_jitter(self.jitter))

    def _index(self, t: float) -> int:
        """The largest ``n`` with ``n * seconds <= t``, exact despite float division."""
        n = math.floor(t / self.seconds)
        while n * self.seconds > t:
            n -= 1
        while (n + 1) * self.seconds <= t:
            n += 1
        return n

    def next_after(self, t: float) -> float:
        return (self._index(t) + 1) * self.seconds

    def previous_before(self, t: float) -> float:
        n = self._index(t)
        return (n - 1 if n * self.seconds == t else n) * self.seconds

    def count_due(self, after: float, upto: float) -> int:
        return max(0, self._index(upto) - self._index(after))

    def describe(self) -> str:
        return f"every {_seconds_text(self.seconds)}{self._jitter_text()}"

    def to_json(self) -> dict[str, object]:
        return {"kind": "every", "seconds": self.seconds, "jitter": self.jitter}


def _zone(key: str) -> tzinfo:
    """The zone for ``key``; UTC needs no time zone database."""
    return UTC if key == "UTC" else ZoneInfo(key)


def _zone_key(tz: object) -> str:
    if isinstance(tz, ZoneInfo) and tz.key:
        return tz.key
    if not isinstance(tz, str):
        raise ConfigurationError(
            f"a cron time zone must be an IANA zone name such as 'UTC' or 'Europe/Paris' "
            f"(or a zoneinfo.ZoneInfo made from one), not {tz!r}"
        )
    try:
        _zone(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ConfigurationError(
            f"unknown time zone {tz!r}: write an IANA zone name such as 'UTC', "
            "'Europe/Paris' or 'America/New_York' (if the name is right, this machine "
            "lacks the time zone database: pip install tzdata)"
        ) from exc
    return tz


def _library_form(expression: object) -> str:
    """The 5-field text cronsim evaluates for ``expression``, checked."""
    if not isinstance(expression, str):
        raise ConfigurationError(f"a cron expression must be a str, not {expression!r}")
    text = _ALIASES.get(expression.strip().lower(), expression)
    if len(text.split()) != 5:
        reason = f"it has {len(text.split())} field(s)"
    else:
        try:
            CronSim(text, datetime(2000, 1, 1))
            return text
        except CronSimError as exc:  # such as "Bad minute"
            reason = str(exc).lower()
    raise ConfigurationError(f"invalid cron expression {expression!r}: {reason}; {_CRON_HINT}")


@dataclass(frozen=True, slots=True)
class Cron(ScheduleSpec):
    """Due when a cron expression matches the local time in ``tz``; see :func:`cron`.

    Raises:
        aq.ConfigurationError: the expression, the zone or ``jitter`` is invalid.
    """

    expression: str
    tz: str = "UTC"
    jitter: float = 0.0

    def __post_init__(self) -> None:
        _library_form(self.expression)
        object.__setattr__(self, "tz", _zone_key(self.tz))
        object.__setattr__(self, "jitter", _check_jitter(self.jitter))

    def _step(self, t: float, *, reverse: bool = False) -> float:
        """cronsim's first match after (or before) ``t``, uncorrected."""
        start = datetime.fromtimestamp(t, _zone(self.tz))
        text = _ALIASES.get(self.expression.strip().lower(), self.expression)
        try:
            return next(CronSim(text, start, reverse=reverse)).timestamp()
        except StopIteration:  # cronsim searches 50 years ahead (or back), no further
            return -math.inf if reverse else math.inf

    def next_after(self, t: float) -> float:
        due = self._step(t)
        # Inside a repeated autumn hour, cronsim can answer with the first pass of
        # a fixed time, which is already behind us: that fire happened, look further.
        while due <= t:
            due = self._step(due)
        return due

    def previous_before(self, t: float) -> float:
        due = self._step(t, reverse=True)
        while due >= t:
            due = self._step(due, reverse=True)
        # Backwards from inside a repeated hour, cronsim misses a fire made on its
        # first pass; walking forward finds it.
        while math.isfinite(due) and (later := self.next_after(due)) < t:
            due = later
        return due

    def count_due(self, after: float, upto: float) -> int:
        """Walks the due times, so it stops counting at :data:`MAX_WALK`."""
        count, due = 0, self.next_after(after)
        while due <= upto and count < MAX_WALK:
            count, due = count + 1, self.next_after(due)
        return count

    def describe(self) -> str:
        return f"cron {self.expression!r} {self.tz}{self._jitter_text()}"

    def to_json(self) -> dict[str, object]:
        return {"kind": "cron", "expression": self.expression, "tz": self.tz, "jitter": self.jitter}


def every(
    interval: float | timedelta | None = None,
    *,
    seconds: float = 0,
    minutes: float = 0,
    hours: float = 0,
    days: float = 0,
    jitter: float = 0,
) -> Every:
    """Due at every multiple of an interval since the UNIX epoch, the same in every process.

    Args:
        interval: seconds or a timedelta, such as ``every(30)``; or give the units instead.
        seconds, minutes, hours, days: summed into the interval: ``every(hours=1, minutes=30)``.
        jitter: delay each fire by up to this many seconds.

    Raises:
        aq.ConfigurationError: no interval, or both kinds; a unit that is not a
            finite number, 0 or more; an interval under :data:`MIN_INTERVAL`; a bad jitter.
    """
    units = {"seconds": seconds, "minutes": minutes, "hours": hours, "days": days}
    for name, value in units.items():
        if not _is_number(value) or not 0 <= value < math.inf:
            raise ConfigurationError(f"every({name}=...) must be a finite number, 0 or more")
    total = seconds + minutes * 60 + hours * 3600 + days * 86400
    if (interval is None) == (not total):
        raise ConfigurationError(
            "give every() one interval, such as every(30), every(timedelta(hours=1)) "
            "or every(minutes=1, seconds=30), but not both a positional one and units"
        )
    if isinstance(interval, timedelta):
        interval = interval.total_seconds()
    return Every(total if interval is None else interval, jitter)


def cron(expression: str, *, tz: str | tzinfo = "UTC", jitter: float = 0) -> Cron:
    """Due when a 5-field cron expression matches the local time in ``tz``.

    Month and day names (``JAN``, ``MON-FRI``) and ``@hourly``, ``@daily``,
    ``@weekly``, ``@monthly``, ``@yearly`` are accepted; daylight saving is
    handled as the module text says.

    Args:
        expression: such as ``"*/5 * * * *"`` or ``"0 9 * * MON-FRI"``.
        tz: an IANA zone name, or a ``zoneinfo.ZoneInfo`` made from one.
        jitter: delay each fire by up to this many seconds.

    Raises:
        aq.ConfigurationError: a malformed expression, an unknown zone, a tzinfo
            that is not a named ZoneInfo, or a bad jitter.
    """
    return Cron(expression, _zone_key(tz), jitter)


def spec_from_json(data: Mapping[str, object]) -> ScheduleSpec:
    """Rebuild a spec from what its ``to_json()`` returned.

    Raises:
        aq.ConfigurationError: ``data`` is not a stored schedule, or holds bad values.
    """
    kind, jitter = data.get("kind"), cast(float, data.get("jitter", 0.0))
    try:  # the values are checked by the constructors
        if kind == "every":
            return Every(cast(float, data.get("seconds")), jitter)
        if kind == "cron":
            return Cron(cast(str, data.get("expression")), cast(str, data.get("tz")), jitter)
    except ConfigurationError as exc:
        raise ConfigurationError(f"bad stored schedule {dict(data)!r}: {exc}") from exc
    raise ConfigurationError(
        f"not a stored schedule: {dict(data)!r}; pass what to_json() returned, whose "
        "'kind' is 'every' or 'cron'"
    )


def jitter_for(name: str, due: float, jitter: float) -> float:
    """A deterministic offset in ``[0, jitter)`` for the fire of ``name`` due at ``due``.

    It comes from SHA-256 of the name and due time, so every scheduler process
    agrees on it.

    Raises:
        aq.ConfigurationError: ``jitter`` is negative, NaN or infinite.
    """
    if not _check_jitter(jitter):
        return 0.0
    digest = hashlib.sha256(f"{name}\0{float(due)!r}".encode()).digest()
    fraction = (int.from_bytes(digest[:8], "big") >> 11) / 2**53  # 53 bits: always < 1
    return min(fraction * jitter, math.nextafter(jitter, 0.0))


def _check_times(last: float | None, now: float, grace: float, catch_up: int) -> None:
    for name, value in (("now", now), ("last", last or 0.0), ("grace", grace)):
        if not _is_number(value) or not math.isfinite(value):
            raise ConfigurationError(f"{name} must be a finite number, not {value!r}")
    if grace < 0:
        raise ConfigurationError(f"grace must be 0 or more seconds, not {grace!r}")
    if not (isinstance(catch_up, int) and not isinstance(catch_up, bool)) or not (
        0 <= catch_up <= MAX_WALK
    ):
        raise ConfigurationError(f"catch_up must be an int from 0 to {MAX_WALK}, not {catch_up!r}")


def due_fires(
    spec: ScheduleSpec, *, last: float | None, now: float, grace: float, catch_up: int
) -> tuple[list[float], int]:
    """The due times to fire at ``now``, oldest first, and how many are skipped.

    Candidates are the due times ``d`` with ``last < d <= now``. With
    ``catch_up == 0`` the newest fires if ``now - d <= grace`` and the others
    are skipped; with ``catch_up = n`` the newest ``n`` fire and the older ones
    are skipped. With ``last=None`` (never fired) only the newest due time can
    fire, within ``grace``, and nothing counts as skipped. The work is bounded:
    ``every`` counts arithmetically and a cron count stops at :data:`MAX_WALK`.

    Args:
        spec: the schedule.
        last: the due time of the last fire recorded, or None.
        now: the current time.
        grace: how late a fire may start, in seconds, when not catching up.
        catch_up: how many missed fires to run, 0 to :data:`MAX_WALK`.

    Raises:
        aq.ConfigurationError: a time is not finite, ``grace`` is negative or
            ``catch_up`` is out of range.
    """
    _check_times(last, now, grace, catch_up)
    newest = spec.previous_before(math.nextafter(now, math.inf))
    if last is None:
        return ([newest] if now - newest <= grace else []), 0
    picked: list[float] = []
    due = newest
    while due > last and len(picked) < max(catch_up, 1):
        picked.append(due)
        due = spec.previous_before(due)
    if not picked:
        return [], 0
    picked.reverse()
    if catch_up == 0 and now - picked[-1] > grace:
        return [], spec.count_due(last, picked[-1])
    return picked, spec.count_due(last, spec.previous_before(picked[0]))

"""``Schedule``: one periodic call of a task, and the checks made when it is defined.

A schedule names a task (by its registered name), when to call it (a
:class:`~aq.scheduling.spec.ScheduleSpec`), the arguments to call it with, and
how to treat fires it missed. Schedules from code (``@broker.task(schedule=)``,
``broker.schedule(...)``) and those added at run time (kept in the store) are
the same objects; :meth:`Schedule.to_json` and :func:`schedule_from_json` are
the stored form. Each fire is a task message whose id :func:`fire_id` derives
from the schedule's name and the due time, so every scheduler names a fire
alike and a fire sent twice is recognised.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from aq.errors import ConfigurationError, SerializationError
from aq.scheduling.spec import MAX_WALK, ScheduleSpec, spec_from_json

if TYPE_CHECKING:
    from aq.serializer import Serializer
    from aq.task import AnyTask

__all__ = [
    "DEFAULT_GRACE",
    "Schedule",
    "ScheduleOptions",
    "define_schedule",
    "fire_id",
    "schedule_from_json",
]

#: Seconds late a fire may still be sent, unless a schedule says otherwise.
DEFAULT_GRACE = 60.0


class ScheduleOptions(TypedDict, total=False):
    """How a schedule calls its task (the keywords of ``broker.schedule`` and
    ``broker.add_schedule`` beside the name).

    Attributes:
        args: positional arguments of each call.
        kwargs: keyword arguments of each call.
        queue: the queue to send to (default: the task's).
        priority: the priority to send with (default: the task's).
        catch_up: after an outage, how many missed fires to send (default 0: a
            fire more than ``grace`` seconds late is skipped).
        grace: seconds late a fire may still be sent (default 60).
    """

    args: Sequence[Any]
    kwargs: Mapping[str, Any] | None
    queue: str | None
    priority: int | None
    catch_up: int
    grace: float


@dataclass(frozen=True, slots=True)
class Schedule:
    """One periodic call of a task.

    Attributes:
        name: unique among the broker's schedules (a task's own schedule is
            named after the task).
        task: the registered name of the task called.
        spec: when (``aq.every(...)``, ``aq.cron(...)``).
        args: positional arguments of each call.
        kwargs: keyword arguments of each call.
        queue: the queue to send to (default: the task's).
        priority: the priority to send with (default: the task's).
        catch_up: after an outage, how many missed fires to send (0: none; only
            a fire at most ``grace`` seconds late is sent).
        grace: seconds late a fire may still be sent when not catching up.
        added_at: for a schedule added at run time, when (UNIX time): it fires
            at its first due time after that.
        stored: whether it was added at run time and is kept in the store.
    """

    name: str
    task: str
    spec: ScheduleSpec
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    queue: str | None = None
    priority: int | None = None
    catch_up: int = 0
    grace: float = DEFAULT_GRACE
    added_at: float | None = None
    stored: bool = False

    def to_json(self) -> dict[str, Any]:
        """The stored form (arguments as given: the broker's codec encodes them)."""
        return {
            "name": self.name,
            "task": self.task,
            "spec": self.spec.to_json(),
            "args": list(self.args),
            "kwargs": dict(self.kwargs),
            "queue": self.queue,
            "priority": self.priority,
            "catch_up": self.catch_up,
            "grace": self.grace,
            "added_at": self.added_at,
        }


def schedule_from_json(data: Any) -> Schedule:
    """A stored schedule read back.

    Raises:
        aq.ConfigurationError: ``data`` is not a stored schedule.
    """
    try:
        spec = spec_from_json(data["spec"])
        return Schedule(
            name=str(data["name"]),
            task=str(data["task"]),
            spec=spec,
            args=tuple(data["args"]),
            kwargs=dict(data["kwargs"]),
            queue=data.get("queue"),
            priority=data.get("priority"),
            catch_up=int(data.get("catch_up", 0)),
            grace=float(data.get("grace", DEFAULT_GRACE)),
            added_at=data.get("added_at"),
            stored=True,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigurationError(f"not a stored schedule: {data!r} ({exc})") from exc


def define_schedule(
    task: AnyTask,
    spec: ScheduleSpec,
    serializer: Serializer,
    *,
    name: str | None = None,
    added_at: float | None = None,
    **options: Unpack[ScheduleOptions],
) -> Schedule:
    """Check and build a schedule of ``task`` (named ``name``, by default the
    task's; ``added_at`` for one added at run time).

    Raises:
        aq.ConfigurationError: the spec is not a schedule, the arguments do not
            fit the task's signature, or an option is out of range; the message
            says what to change.
        aq.SerializationError: an argument cannot be encoded.
    """
    name = task.name if name is None else name
    args, kwargs = options.get("args", ()), dict(options.get("kwargs") or {})
    catch_up, grace = options.get("catch_up", 0), options.get("grace", DEFAULT_GRACE)
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"a schedule's name must be a non-empty string, not {name!r}")
    if not isinstance(spec, ScheduleSpec):
        raise ConfigurationError(
            f"schedule {name!r}: {spec!r} is not a schedule; write aq.every(seconds=30) or "
            "aq.cron('*/5 * * * *', tz='Europe/Paris')"
        )
    try:
        inspect.signature(task.fn).bind(*args, **kwargs)
    except TypeError as exc:
        raise ConfigurationError(
            f"schedule {name!r} cannot call task {task.name!r}: {exc}; give its arguments "
            "with args=[...] and kwargs={...}"
        ) from exc
    try:
        serializer.dumps([list(args), kwargs])
    except SerializationError as exc:
        raise SerializationError(
            f"the arguments of schedule {name!r} cannot be sent: {exc}"
        ) from exc
    if not isinstance(catch_up, int) or isinstance(catch_up, bool) or not 0 <= catch_up <= MAX_WALK:
        raise ConfigurationError(
            f"schedule {name!r}: catch_up must be an int from 0 (no missed fires are sent) "
            f"to {MAX_WALK}, not {catch_up!r}"
        )
    if not isinstance(grace, int | float) or not math.isfinite(grace) or grace < 0:
        raise ConfigurationError(f"schedule {name!r}: grace must be 0 or more seconds")
    return Schedule(
        name=name,
        task=task.name,
        spec=spec,
        args=tuple(args),
        kwargs=kwargs,
        queue=options.get("queue"),
        priority=options.get("priority"),
        catch_up=catch_up,
        grace=float(grace),
        added_at=added_at,
        stored=added_at is not None,
    )


def fire_id(name: str, due: float) -> str:
    """The task id of schedule ``name``'s fire due at ``due``: the same in every process."""
    stamp = datetime.fromtimestamp(due, UTC).isoformat(timespec="milliseconds")
    return f"{name}@{stamp.replace('+00:00', 'Z')}"

"""Monitoring data as people read it: one line per event, a status, an answer.

Pure functions from events, task states and inspect answers to text, shared
by ``aq events``, ``aq status``, ``aq inspect`` and ``aq top``. Machine
output (``--json``) is the data itself; these are for eyes.
"""

from __future__ import annotations

import datetime
from typing import Any

from aq.monitor.status import TaskStatus
from aq.monitor.wire import Event

__all__ = ["clock", "event_line", "short_id", "status_lines", "task_line", "when"]

#: Event fields every line shows in its own place, not as ``key=value``.
_PLACED = frozenset(("type", "ts", "task_id", "name", "worker", "host"))


def clock(ts: float) -> str:
    """``ts`` as a local time of day to the millisecond."""
    return datetime.datetime.fromtimestamp(ts).strftime("%H:%M:%S.%f")[:-3]


def when(ts: float | None) -> str:
    """``ts`` as a UTC date and time, or ``-``."""
    if ts is None:
        return "-"
    moment = datetime.datetime.fromtimestamp(ts, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def short_id(task_id: str) -> str:
    """The first 8 characters of an id (enough to tell tasks apart on a screen)."""
    return task_id[:8]


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list) and all(isinstance(v, float) for v in value):
        return ",".join(f"{v:.2f}" for v in value)
    if isinstance(value, dict) and "type" in value and "message" in value:
        return f"{value['type']}({value['message']!r})"
    return str(value)


def event_line(event: Event) -> str:
    """One event on one line: time, type, task, worker, then the other fields."""
    parts = [clock(event.ts), f"{event.type:<18}"]
    if event.name is not None:
        parts.append(f"{event.name}[{event.task_id or '-'}]")
    if event.worker is not None:
        parts.append(f"worker={event.worker}")
    elif event.get("host") is not None:
        parts.append(f"host={event.get('host')}")
    for key, value in event.fields.items():
        if key in _PLACED or value is None:
            continue
        if key == "runtime" and isinstance(value, int | float):
            parts.append(f"runtime={value * 1000:.1f}ms")
        elif key == "eta" and isinstance(value, int | float):
            parts.append(f"eta={clock(value)}")
        else:
            parts.append(f"{key}={_value(value)}")
    return "  ".join(parts)


def status_lines(status: TaskStatus) -> list[str]:
    """A task's status, one fact per line."""
    lines = [f"task      {status.task_id}", f"state     {status.state}"]
    for label, value in (
        ("name", status.name),
        ("queue", status.queue),
        ("attempt", status.attempt),
        ("worker", status.worker),
    ):
        if value is not None:
            lines.append(f"{label:<9} {value}")
    if status.since is not None:
        lines.append(f"since     {when(status.since)}")
    if status.eta is not None:
        lines.append(f"due       {when(status.eta)}")
    if status.error_type is not None:
        lines.append(f"error     {status.error_type}: {status.error or ''}")
    return lines


def task_line(task: dict[str, Any]) -> str:
    """A task in an ``active`` or ``reserved`` answer."""
    line = f"{task.get('id')}  {task.get('name')}  queue={task.get('queue')}"
    line += f"  attempt={task.get('attempt')}"
    started = task.get("started_at")
    if isinstance(started, int | float):
        line += f"  started={when(started)}"
    if "args" in task:
        line += f"  args={task['args']!r} kwargs={task.get('kwargs')!r}"
    return line

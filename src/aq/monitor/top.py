"""What ``aq top`` shows, kept up to date from events and queue stats.

:class:`TopState` takes events (:meth:`TopState.feed`), workers' own
descriptions (``inspect stats``, for workers seen before their first
heartbeat) and queue counts (:meth:`TopState.queues`), and :meth:`render`
draws them as rich tables: workers (alive, lost after three missed
heartbeats, or gone), queues with their depth and their rates in and out,
the rates at which workers take and finish their tasks, throughput and
failures, and runtime percentiles per task name. It does no
I/O; :mod:`aq.monitor.terminal` drives it.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from aq.monitor.wire import Event
from aq.transport.admin import QueueStats

__all__ = ["TopState"]

#: Seconds over which rates are measured.
WINDOW = 10.0
#: Runtimes kept per task name for its percentiles.
_SAMPLES = 1000
#: Heartbeats a worker may miss before it is shown as lost (workers also
#: answer aq top's questions every few seconds, events on or not).
_MISSED = 3
#: Seconds a worker that went offline, or was lost, stays on the screen.
_FORGET_AFTER = 60.0
_ENDS = frozenset(("task-succeeded", "task-failed", "task-cancelled", "task-expired"))
#: At most this many task names, queues and workers are told apart (anyone who
#: can publish events can make up names): past it, task figures go to
#: :data:`OTHERS`, new queues are not followed, and the longest-silent worker
#: makes room.
MAX_NAMES = 500
MAX_QUEUES = 100
MAX_WORKERS = 1000
OTHERS = "(other tasks)"
#: Seconds a queue named only by events is followed after its last event.
_QUEUE_QUIET = 3600.0
_TEXT = 200


@dataclass
class _Worker:
    host: str = "?"
    pid: int | None = None
    seen: float = 0.0
    freq: float = 2.0
    active: int = 0
    processed: int = 0
    concurrency: int | None = None
    gone: bool = False
    started_at: float | None = None
    version: str | None = None
    queues: list[str] = field(default_factory=list)

    def to_json(self, worker_id: str, state: str) -> dict[str, Any]:
        """This worker as the dashboard shows it."""
        return {
            "worker": worker_id,
            "host": self.host,
            "pid": self.pid,
            "state": state,
            "seen": self.seen,
            "active": self.active,
            "processed": self.processed,
            "concurrency": self.concurrency,
            "started_at": self.started_at,
            "version": self.version,
            "queues": self.queues,
        }


@dataclass
class _Tasks:
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    runtimes: deque[float] = field(default_factory=lambda: deque(maxlen=_SAMPLES))


class TopState:
    """The figures ``aq top`` shows; see the module docstring."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.workers: dict[str, _Worker] = {}
        self.tasks: dict[str, _Tasks] = defaultdict(_Tasks)
        self.stats: dict[str, QueueStats] = {}
        self.events_seen = 0
        self.failures = 0
        self._done: deque[float] = deque()
        self._in: dict[str, deque[float]] = defaultdict(deque)
        self._out: dict[str, deque[float]] = defaultdict(deque)
        #: Queues named by events: name -> when last named.
        self._queues_seen: dict[str, float] = {}

    def feed(self, event: Event, now: float | None = None) -> None:
        """Take one event into account (``now``: when it arrived)."""
        now = time.time() if now is None else now
        self.events_seen += 1
        kind = event.type
        if event.worker is not None:
            self._worker_event(event, now)
        name, queue = event.name, self._queue(event.get("queue"), now)
        if kind == "task-received" and queue is not None:
            self._in[queue].append(now)
        if kind in _ENDS:
            self._done.append(now)
            if queue is not None:
                self._out[queue].append(now)
        if name is None:
            return
        if name not in self.tasks:
            name = name[:_TEXT] if len(self.tasks) < MAX_NAMES else OTHERS
        stats = self.tasks[name]
        if kind == "task-succeeded":
            stats.succeeded += 1
        elif kind == "task-failed":
            stats.failed += 1
            self.failures += 1
        elif kind == "task-retried":
            stats.retried += 1
        runtime = event.get("runtime")
        if kind in ("task-succeeded", "task-failed") and isinstance(runtime, int | float):
            stats.runtimes.append(float(runtime))

    def _queue(self, queue: Any, now: float) -> str | None:
        """``queue`` if it is (or may become) one of those followed."""
        if not isinstance(queue, str):
            return None
        seen = self._queues_seen
        if queue not in seen and len(seen) >= MAX_QUEUES:
            return None
        seen[queue] = now
        return queue

    def _worker(self, worker_id: str) -> _Worker:
        """The worker ``worker_id``, made (room made) if new."""
        worker_id = worker_id[:_TEXT]
        worker = self.workers.get(worker_id)
        if worker is None:
            if len(self.workers) >= MAX_WORKERS:
                oldest = min(self.workers, key=lambda w: self.workers[w].seen)
                del self.workers[oldest]
            worker = self.workers[worker_id] = _Worker()
        return worker

    def _worker_event(self, event: Event, now: float) -> None:
        worker_id = event.worker
        assert worker_id is not None
        worker = self._worker(worker_id)
        worker.seen = now
        worker.host = str(event.get("host", worker.host))[:_TEXT]
        worker.gone = event.type == "worker-offline"
        for name in ("pid", "active", "processed", "concurrency", "freq", "started_at"):
            value = event.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                setattr(worker, name, value)
        self._describe(worker, event.fields)

    def describe_worker(self, worker_id: str, stats: dict[str, Any], now: float) -> None:
        """Take a worker's ``inspect stats`` answer into account."""
        worker = self._worker(worker_id)
        worker.seen = max(worker.seen, now)
        worker.host = str(stats.get("host", worker.host))[:_TEXT]
        worker.pid = stats.get("pid", worker.pid)
        worker.active = int(stats.get("in_flight", worker.active))
        worker.processed = int(stats.get("processed", worker.processed))
        worker.concurrency = stats.get("concurrency", worker.concurrency)
        started_at = stats.get("started_at")
        if isinstance(started_at, int | float) and not isinstance(started_at, bool):
            worker.started_at = float(started_at)
        self._describe(worker, stats)

    @staticmethod
    def _describe(worker: _Worker, fields: Mapping[str, Any]) -> None:
        version, queues = fields.get("version"), fields.get("queues")
        if isinstance(version, str):
            worker.version = version[:40]
        if isinstance(queues, list):
            worker.queues = [str(q)[:_TEXT] for q in queues[:50]]

    def prune(self, now: float) -> None:
        """Forget what is too old to show: times outside the rate window, and
        workers long gone. (Rates prune as they are read; a watcher that reads
        none of them, such as the dashboard with no page open, calls this.)"""
        self.rate(self._done, now)
        for rates in (self._in, self._out):
            for queue, times in list(rates.items()):
                if not self.rate(times, now):
                    del rates[queue]
        for queue, seen in list(self._queues_seen.items()):
            if now - seen > _QUEUE_QUIET:
                del self._queues_seen[queue]
        for worker_id, worker in list(self.workers.items()):
            if self.worker_state(worker, now) != "online" and now - worker.seen > _FORGET_AFTER:
                del self.workers[worker_id]

    def worker_state(self, worker: _Worker, now: float) -> str:
        """``online``, ``lost`` (three heartbeats missed) or ``offline``."""
        if worker.gone:
            return "offline"
        return "lost" if now - worker.seen > _MISSED * worker.freq + 1 else "online"

    def snapshot(self, now: float) -> dict[str, Any]:
        """The figures as plain data: workers, queues with rates, per-task stats."""
        self.prune(now)
        workers = [
            worker.to_json(worker_id, self.worker_state(worker, now))
            for worker_id, worker in sorted(self.workers.items())
        ]
        queues = []
        for name in sorted(set(self.stats) | set(self._in) | set(self._out)):
            stats = self.stats.get(name)
            queues.append(
                {
                    "queue": name,
                    "ready": stats.ready if stats else None,
                    "delayed": stats.delayed if stats else None,
                    "unacked": stats.unacked if stats else None,
                    "dead": stats.dead if stats else None,
                    "consumers": stats.consumers if stats else None,
                    "taken_rate": self.rate(self._in[name], now),
                    "done_rate": self.rate(self._out[name], now),
                }
            )
        tasks = []
        for name, figures in sorted(self.tasks.items()):
            ordered = sorted(figures.runtimes)
            tasks.append(
                {
                    "name": name,
                    "succeeded": figures.succeeded,
                    "failed": figures.failed,
                    "retried": figures.retried,
                    "p50": _quantile(ordered, 0.50),
                    "p95": _quantile(ordered, 0.95),
                }
            )
        return {
            "workers": workers,
            "queues": queues,
            "tasks": tasks,
            "rate": self.rate(self._done, now),
            "failures": self.failures,
            "events": self.events_seen,
        }

    def seen_queues(self) -> list[str]:
        """The queues that events have named (in the last hour; at most
        :data:`MAX_QUEUES`)."""
        return list(self._queues_seen)

    def queues(self, stats: list[QueueStats]) -> None:
        """The latest counts of the queues shown (those not among them are dropped)."""
        self.stats = {entry.queue: entry for entry in stats}

    def rate(self, times: deque[float], now: float) -> float:
        """Events per second in ``times`` over the last :data:`WINDOW` seconds."""
        while times and times[0] < now - WINDOW:
            times.popleft()
        return len(times) / WINDOW

    def render(self, now: float | None = None) -> RenderableType:
        """Everything, as rich renderables."""
        now = time.time() if now is None else now
        alive = [w for w in self.workers.values() if self.worker_state(w, now) == "online"]
        head = Text(f"aq top  {self.title}", style="bold")
        head.append(
            f"   workers {len(alive)}   tasks/s {self.rate(self._done, now):.1f}"
            f"   failed {self.failures}   events {self.events_seen}   (q quits)"
        )
        return Group(head, self._workers_table(now), self._queues_table(now), self._tasks_table())

    def _workers_table(self, now: float) -> Table:
        self.prune(now)  # long gone: off the screen
        table = Table(title="workers", title_justify="left", expand=True)
        for column in ("worker", "host", "state", "active", "processed", "seen"):
            table.add_column(
                column, justify="right" if column in ("active", "processed") else "left"
            )
        for worker_id, worker in sorted(self.workers.items()):
            state = self.worker_state(worker, now)
            style = {"online": "green", "lost": "yellow", "offline": "dim"}[state]
            table.add_row(
                worker_id,
                worker.host,
                Text(state, style=style),
                str(worker.active),
                str(worker.processed),
                f"{now - worker.seen:.0f}s ago",
            )
        return table

    def _queues_table(self, now: float) -> Table:
        table = Table(title="queues", title_justify="left", expand=True)
        table.add_column("queue")
        for column in ("ready", "delayed", "unacked", "dead", "consumers", "taken/s", "done/s"):
            table.add_column(column, justify="right")
        for name in sorted(set(self.stats) | set(self._in) | set(self._out)):
            stats = self.stats.get(name)
            counts = (
                [stats.ready, stats.delayed, stats.unacked, stats.dead, stats.consumers]
                if stats is not None
                else ["-"] * 5
            )
            table.add_row(
                name,
                *map(str, counts),
                f"{self.rate(self._in[name], now):.1f}",
                f"{self.rate(self._out[name], now):.1f}",
            )
        return table

    def _tasks_table(self) -> Table:
        table = Table(title="tasks", title_justify="left", expand=True)
        table.add_column("task")
        for column in ("succeeded", "failed", "retried", "p50", "p95"):
            table.add_column(column, justify="right")
        for name, stats in sorted(self.tasks.items()):
            p50, p95 = _percentile(stats.runtimes, 0.50), _percentile(stats.runtimes, 0.95)
            table.add_row(
                name,
                str(stats.succeeded),
                Text(str(stats.failed), style="red" if stats.failed else ""),
                str(stats.retried),
                p50,
                p95,
            )
        return table


def _quantile(ordered: list[float], fraction: float) -> float | None:
    """The ``fraction`` nearest-rank percentile of the sorted ``ordered``, or None."""
    if not ordered:
        return None
    index = min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))
    return ordered[index]


def _percentile(samples: deque[float], fraction: float) -> str:
    """The ``fraction`` percentile of ``samples`` in milliseconds, or ``-``."""
    value = _quantile(sorted(samples), fraction)
    return "-" if value is None else f"{value * 1000:.1f}ms"

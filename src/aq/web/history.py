"""The dashboard's memory of tasks: the newest ``limit`` tasks, and an hour of
throughput.

:class:`History` keeps one :class:`TaskRecord` per task id, built from the
task's events (sent, received, started, and how each attempt ended), in the
order they were last touched: a touched task moves to the end, and past
``limit`` the least recently touched is forgotten. Every touch takes the next
number of a sequence, so a page that has seen everything up to ``seq`` asks
for :meth:`History.changes_since` and gets the tasks touched since, newest
first. :class:`Timeline` counts finished and failed tasks in ten-second
buckets over the last hour. Neither does I/O, and both are bounded whatever
the event rate: a record holds at most :data:`MAX_ATTEMPTS` attempts, and
arguments and results are clipped to :data:`MAX_DATA` characters of JSON.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from aq.monitor.wire import Event

__all__ = ["Attempt", "History", "TaskRecord", "Timeline"]

#: Attempts kept per task (the first and the newest, when there are more).
MAX_ATTEMPTS = 20
#: Characters of JSON kept of a task's arguments and of its result.
MAX_DATA = 2000
#: Characters kept of an error message or a dead-letter reason.
MAX_TEXT = 1000

#: A task's state after each event, as ``aq status`` names them.
_STATE = {
    "task-sent": "queued",
    "task-received": "received",
    "task-started": "running",
    "task-succeeded": "succeeded",
    "task-failed": "failed",
    "task-retried": "retrying",
    "task-dead-lettered": "dead-lettered",
    "task-cancelled": "cancelled",
    "task-expired": "expired",
}
#: Within one attempt, a state never goes back to an earlier rank (events from a
#: producer and from a worker may arrive in either order).
_RANK = {
    "queued": 0,
    "scheduled": 0,
    "received": 1,
    "running": 2,
    "retrying": 3,
    "succeeded": 3,
    "failed": 3,
    "cancelled": 3,
    "expired": 3,
    "dead-lettered": 4,
}
_ENDS = {"task-succeeded", "task-failed", "task-retried", "task-cancelled", "task-expired"}


def clip(value: Any, limit: int = MAX_DATA) -> Any:
    """``value`` if its JSON is short, else the start of that JSON as a string."""
    try:
        text = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return repr(value)[:limit]
    if len(text) <= limit:
        return value
    return text[:limit].decode(errors="ignore") + "…"


def _text(value: Any, limit: int = MAX_TEXT) -> str | None:
    return value[:limit] if isinstance(value, str) else None


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


@dataclass(slots=True)
class Attempt:
    """One run of a task, as its events told it."""

    attempt: int
    received: float | None = None
    started: float | None = None
    ended: float | None = None
    outcome: str | None = None
    worker: str | None = None
    runtime: float | None = None
    error: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(slots=True)
class TaskRecord:
    """What the dashboard knows of one task."""

    id: str
    seq: int
    name: str | None = None
    queue: str | None = None
    state: str = "queued"
    attempt: int = 1
    updated: float = 0.0
    sent: float | None = None
    eta: float | None = None
    worker: str | None = None
    root: str | None = None
    step: Any = None
    args: Any = None
    kwargs: Any = None
    result: Any = None
    has_result: bool = False
    error: dict[str, Any] | None = None
    reason: str | None = None
    runtime: float | None = None
    attempts: list[Attempt] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The fields a list of tasks shows."""
        return {
            "id": self.id,
            "seq": self.seq,
            "name": self.name,
            "queue": self.queue,
            "state": self.state,
            "attempt": self.attempt,
            "updated": self.updated,
            "worker": self.worker,
            "runtime": self.runtime,
            "root": self.root,
        }

    def to_json(self) -> dict[str, Any]:
        """Everything, for the task's own page."""
        data = self.summary()
        data.update(
            sent=self.sent,
            eta=self.eta,
            step=self.step,
            args=self.args,
            kwargs=self.kwargs,
            result=self.result,
            has_result=self.has_result,
            error=self.error,
            reason=self.reason,
            attempts=[attempt.to_json() for attempt in self.attempts],
        )
        return data

    def attempt_of(self, number: int) -> Attempt:
        """The (newest) :class:`Attempt` numbered ``number``, made if new."""
        for attempt in reversed(self.attempts):
            if attempt.attempt == number:
                return attempt
        return self.new_attempt(number)

    def new_attempt(self, number: int) -> Attempt:
        """A new run numbered ``number`` (a retry, or a dead letter sent back)."""
        attempt = Attempt(number)
        self.attempts.append(attempt)
        if len(self.attempts) > MAX_ATTEMPTS:  # keep the first and the newest
            del self.attempts[1]
        return attempt


class History:
    """The newest ``limit`` tasks; see the module docstring."""

    def __init__(self, limit: int = 10_000) -> None:
        if limit < 1:
            raise ValueError("the history must hold at least one task")
        self.limit = limit
        self.seq = 0
        #: Tasks forgotten to stay within ``limit``.
        self.evicted = 0
        self._tasks: OrderedDict[str, TaskRecord] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tasks)

    def get(self, task_id: str) -> TaskRecord | None:
        return self._tasks.get(task_id)

    def feed(self, event: Event) -> TaskRecord | None:
        """Take a task event into account; the record it touched, if any."""
        state = _STATE.get(event.type)
        task_id = event.task_id
        if state is None or task_id is None:
            return None
        record = self._touch(task_id, event.ts)
        fields = event.fields
        record.name = _text(event.name, 200) or record.name
        record.queue = _text(fields.get("queue"), 200) or record.queue
        record.root = _text(fields.get("root"), 200) or record.root
        if "step" in fields:
            record.step = clip(fields["step"], 200)
        attempt_no = fields.get("attempt")
        number = attempt_no if isinstance(attempt_no, int) and attempt_no > 0 else record.attempt
        self._apply(record, event, state, number)
        return record

    def _touch(self, task_id: str, ts: float) -> TaskRecord:
        tasks = self._tasks
        self.seq += 1
        record = tasks.get(task_id)
        if record is None:
            record = tasks[task_id] = TaskRecord(task_id, self.seq, updated=ts)
            if len(tasks) > self.limit:
                tasks.popitem(last=False)
                self.evicted += 1
        else:
            tasks.move_to_end(task_id)
            record.seq = self.seq
            record.updated = max(record.updated, ts)
        return record

    def _apply(self, record: TaskRecord, event: Event, state: str, number: int) -> None:
        fields, kind, ts = event.fields, event.type, event.ts
        if "args" in fields:
            record.args, record.kwargs = clip(fields["args"]), clip(fields.get("kwargs"))
        eta = _number(fields.get("eta"))
        if kind == "task-sent":
            record.sent = ts
            if record.attempts or number < record.attempt:
                return  # the worker's news came first
            if eta is not None and eta > ts:
                record.eta, state = eta, "scheduled"
            record.state = state
            return
        # Whether this is news of the task's newest attempt, and not older than
        # what is known of it; news of an earlier attempt only fills that attempt in.
        attempt = record.attempt_of(number)
        rerun = kind == "task-received" and attempt.ended is not None and ts >= attempt.ended
        if rerun:  # a dead letter sent back runs the same attempt again: a new run
            attempt = record.new_attempt(number)
        current = (
            rerun
            or number > record.attempt
            or (number == record.attempt and _RANK[state] >= _RANK.get(record.state, 0))
        )
        attempt.worker = _text(event.worker, 200) or attempt.worker
        error = fields.get("error")
        if kind == "task-received":
            attempt.received = ts
            if current and eta is not None and eta > ts:
                state = "scheduled"
        elif kind == "task-started":
            attempt.started = ts
        elif kind in _ENDS:
            attempt.ended, attempt.outcome = ts, state
            attempt.runtime = _number(fields.get("runtime"))
            if isinstance(error, dict):
                attempt.error = {
                    "type": _text(error.get("type"), 200),
                    "message": _text(error.get("message")),
                }
            if "result" in fields:
                record.result, record.has_result = clip(fields["result"]), True
        elif kind == "task-dead-lettered":
            record.reason = _text(fields.get("reason"))
        if not current:
            return
        record.attempt = number
        record.state = state
        record.worker = attempt.worker or record.worker
        if kind in _ENDS:
            record.runtime = attempt.runtime
            record.error = attempt.error or record.error
        if kind == "task-retried":  # when the next attempt is due
            record.eta = eta
        elif kind == "task-received":  # due later, or due now
            record.eta = eta if eta is not None and eta > ts else None

    def changes_since(self, seq: int, limit: int) -> list[TaskRecord]:
        """The tasks touched after ``seq``, newest first, at most ``limit``."""
        changed: list[TaskRecord] = []
        for record in reversed(self._tasks.values()):
            if record.seq <= seq or len(changed) >= limit:
                break
            changed.append(record)
        return changed

    def newest(self) -> Iterator[TaskRecord]:
        """Every task, most recently touched first."""
        return reversed(self._tasks.values())

    def search(
        self,
        *,
        text: str = "",
        name: str = "",
        state: str = "",
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[list[TaskRecord], int]:
        """Tasks whose id starts with (or name contains) ``text``, named ``name``, in
        ``state``; newest first, a page of ``limit`` from ``offset``, and how many
        matched in all."""
        text = text.strip().lower()
        found: list[TaskRecord] = []
        total = 0
        for record in reversed(self._tasks.values()):
            if name and record.name != name:
                continue
            if state and record.state != state:
                continue
            if text and not (
                record.id.lower().startswith(text) or text in (record.name or "").lower()
            ):
                continue
            if offset <= total < offset + limit:
                found.append(record)
            total += 1
        return found, total

    def workflow(self, root: str, limit: int = 100) -> list[TaskRecord]:
        """The tasks of the workflow ``root`` that are still remembered, oldest first."""
        steps = [r for r in self._tasks.values() if r.root == root or r.id == root]
        steps.sort(key=_began)
        return steps[:limit]


def _began(record: TaskRecord) -> float:
    """When a task was sent, or else first received, or else last touched."""
    if record.sent is not None:
        return record.sent
    first = record.attempts[0].received if record.attempts else None
    return first if first is not None else record.updated


class Timeline:
    """Finished and failed tasks per ten seconds over the last hour."""

    BUCKET = 10.0
    SPAN = 3600.0

    def __init__(self) -> None:
        self._buckets: deque[list[float]] = deque(maxlen=int(self.SPAN / self.BUCKET))

    def count(self, ts: float, *, failed: bool) -> None:
        """Count one task that finished at ``ts`` (``failed``: it failed for good)."""
        start = ts - ts % self.BUCKET
        buckets = self._buckets
        if not buckets or start > buckets[-1][0]:
            buckets.append([start, 0.0, 0.0])
            bucket = buckets[-1]
        else:  # late news (clocks differ): its own bucket, made if need be
            index = len(buckets) - 1
            while index >= 0 and buckets[index][0] > start:
                index -= 1
            if index >= 0 and buckets[index][0] == start:
                bucket = buckets[index]
            else:
                if len(buckets) == buckets.maxlen:
                    if index < 0:
                        return  # older than the hour kept
                    buckets.popleft()
                    index -= 1
                bucket = [start, 0.0, 0.0]
                buckets.insert(index + 1, bucket)
        bucket[1] += 1
        if failed:
            bucket[2] += 1

    def points(self, now: float | None = None) -> list[list[float]]:
        """``[start, finished, failed]`` for each bucket of the last hour that saw any."""
        now = time.time() if now is None else now
        first = now - self.SPAN
        return [list(b) for b in self._buckets if b[0] >= first]

"""``Board``: everything the dashboard shows that it learns by watching.

It joins aq top's figures (:class:`~aq.monitor.top.TopState`: workers,
queue counts and rates, per-task-name statistics), the task history and the
hour's timeline (:mod:`aq.web.history`). Events
go in through :meth:`Board.feed`; pages read :meth:`Board.overview` and the
tasks touched since a sequence number. Every half second the collector calls
:meth:`Board.tick`, which wakes the live streams when something changed (and
every few seconds regardless, to keep connections alive). It does no I/O.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aq.monitor.top import TopState
from aq.monitor.wire import Event
from aq.web.history import History, Timeline

__all__ = ["Board"]

_FINISHED = {"task-succeeded": False, "task-failed": True, "task-cancelled": False}
#: Seconds after which a quiet board still wakes its streams.
_KEEPALIVE = 5.0


class Board:
    """What the dashboard knows; see the module docstring."""

    def __init__(self, title: str, history: int = 10_000) -> None:
        self.title = title
        self.top = TopState(title)
        self.history = History(history)
        self.timeline = Timeline()
        self.started = time.time()
        #: Why the last read of the broker failed, if it did (shown on the pages).
        self.problem: str | None = None
        self._ticked_seq = -1
        self._ticked_at = 0.0
        self._tick = asyncio.Event()
        #: The overview as of the last tick, shared by every live stream.
        self._shared: dict[str, Any] | None = None

    def feed(self, event: Event) -> None:
        """Take one event into account."""
        self.top.feed(event)  # rates by arrival: a worker's clock may be off
        self.history.feed(event)
        failed = _FINISHED.get(event.type)
        if failed is not None:
            self.timeline.count(event.ts, failed=failed)

    def tick(self, now: float | None = None) -> bool:
        """Wake the live streams if anything changed (or it has been quiet a while);
        whether they were woken."""
        now = time.monotonic() if now is None else now
        if self.history.seq == self._ticked_seq and now - self._ticked_at < _KEEPALIVE:
            return False
        self._ticked_seq, self._ticked_at = self.history.seq, now
        self._shared = None
        self._tick.set()
        self._tick = asyncio.Event()
        return True

    async def next_tick(self) -> None:
        """Wait for the next :meth:`tick` that wakes the streams."""
        await self._tick.wait()

    def overview(self, now: float | None = None) -> dict[str, Any]:
        """Workers, queues, rates and the timeline, as plain data."""
        now = time.time() if now is None else now
        figures = self.top.snapshot(now)
        figures.update(
            title=self.title,
            now=now,
            seq=self.history.seq,
            remembered=len(self.history),
            limit=self.history.limit,
            forgotten=self.history.evicted,
            timeline=self.timeline.points(now),
            online=sum(1 for w in figures["workers"] if w["state"] == "online"),
            problem=self.problem,
        )
        return figures

    def live(self, since: int, limit: int, now: float | None = None) -> dict[str, Any]:
        """What a live page needs after ``since``: the overview (computed once
        per tick for every page), and the tasks touched since (newest first, at
        most ``limit``; ``more`` if there were more)."""
        changed = self.history.changes_since(since, limit + 1)
        if self._shared is None:
            self._shared = self.overview(now)
        figures = dict(self._shared)
        figures["seq"] = self.history.seq  # what ``changed`` covers
        figures["changed"] = [record.summary() for record in changed[:limit]]
        figures["more"] = len(changed) > limit
        return figures

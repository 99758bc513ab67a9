"""``Collector``: the dashboard's background loops that keep its board current.

- events: reads the broker's event stream into the board, and subscribes
  again (after a second) when the broker drops it;
- workers: asks ``inspect stats`` every three seconds, so workers show with
  events off and before their first heartbeat;
- queues: reads the counts of every known queue every two seconds;
- ticker: wakes the live pages every half second when something changed.

Each loop survives any error from the broker: it notes the problem on the
board (the pages show it) and tries again, so the dashboard never stalls
silently. :meth:`Collector.start` is idempotent, so a dashboard mounted
inside another application (whose lifespan it does not see) starts its loops
with its first request; they end when the broker is shut down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aq import background
from aq.broker import Broker
from aq.errors import AQError
from aq.logs import event
from aq.web.board import Board

__all__ = ["Collector"]

log = logging.getLogger("aq.dashboard")

ASK_EVERY = 3.0
QUEUES_EVERY = 2.0
TICK_EVERY = 0.5
#: Seconds start() waits for the event stream's subscription.
SUBSCRIBE_WAIT = 5.0


class Collector:
    """Keeps ``board`` current from ``broker``; see the module docstring."""

    def __init__(self, broker: Broker, board: Board) -> None:
        self.broker = broker
        self.board = board
        self._tasks: list[asyncio.Task[None]] = []
        self._lock = asyncio.Lock()
        self._problems: dict[str, str] = {}
        self._subscribed = asyncio.Event()

    @property
    def running(self) -> bool:
        return any(not task.done() for task in self._tasks)

    async def start(self) -> None:
        """Start the loops, unless they run (they end when the broker is shut down,
        as a host application does at its shutdown)."""
        if self.running:
            return
        async with self._lock:
            if self.running:
                return
            await self.broker.connect()
            loops: list[tuple[str, background.Loop]] = [
                ("aq-dashboard-events", self._events),
                ("aq-dashboard-workers", self._workers),
                ("aq-dashboard-queues", self._queues),
                ("aq-dashboard-ticker", self._ticker),
            ]
            self._tasks = [background.start(name, loop) for name, loop in loops]
            # What happens from now on is seen: wait (a little) for the subscription.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SUBSCRIBE_WAIT):
                    await self._subscribed.wait()

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _trouble(self, loop: str, error: BaseException | None) -> None:
        """Note (or clear) the problem of one loop on the board."""
        if error is None:
            self._problems.pop(loop, None)
        else:
            text = f"{loop}: {error}"
            if self._problems.get(loop) != text:
                event(log, logging.WARNING, "dashboard.read_failed", loop=loop, error=error)
            self._problems[loop] = text
        self.board.problem = "; ".join(self._problems.values()) or None

    def _live(self) -> bool:
        """Whether the broker is still started (the loops end when it is not)."""
        return self.broker.is_started

    async def _events(self) -> None:
        while self._live():
            try:
                async with self.broker.subscribe_events() as stream:
                    self._subscribed.set()
                    self._trouble("events", None)
                    async for item in stream:
                        self.board.feed(item)
            except AQError as exc:
                self._trouble("events", exc)
            await asyncio.sleep(1.0)

    async def _workers(self) -> None:
        while self._live():
            with contextlib.suppress(AQError):  # nobody answering is no problem
                answers = await self.broker.inspect.stats(timeout=1.0)
                now = time.time()
                for worker_id, stats in answers.items():
                    if isinstance(stats, dict):
                        self.board.top.describe_worker(worker_id, stats, now)
            await asyncio.sleep(ASK_EVERY)

    def queue_names(self) -> list[str]:
        """The app's queues and those seen in events."""
        return list(dict.fromkeys([*self.broker.queues, *self.board.top.seen_queues()]))

    async def _queues(self) -> None:
        admin = self.broker.admin
        while self._live():
            try:
                stats = [await admin.stats(queue) for queue in self.queue_names()]
            except AQError as exc:
                self._trouble("queues", exc)
            else:
                self.board.top.queues(stats)
                self._trouble("queues", None)
            await asyncio.sleep(QUEUES_EVERY)

    async def _ticker(self) -> None:
        while self._live():
            self.board.top.prune(time.time())
            self.board.tick()
            await asyncio.sleep(TICK_EVERY)
        for task in self._tasks:  # the broker was shut down: the other loops end too
            if task is not asyncio.current_task():
                task.cancel()

"""Limits that hold across the whole cluster: ``global_rate_limit`` and
``global_max_concurrency``, each optionally per ``limit_key``.

The policy lives here; the state lives in the broker's
:class:`~aq.transport.Store`, in two atomic operations every process shares:

- **Rate** (GCRA, :meth:`Store.reserve_rate`): a task asks for a place in the
  rate (the tasks that start while the worker waits for the store's last
  answer ask together, in one store operation). A place within
  :attr:`ClusterLimits.max_wait` is waited for here; one further ahead, up to
  :attr:`ClusterLimits.horizon`, is reserved and the message goes back to the
  broker due at its place, with the place written in
  the ``aq-rate-place`` header, so it runs then without asking again: it keeps
  the place it was given, in the order it asked. Beyond the horizon nothing is
  reserved (a purged backlog must not leave the rate booked for hours) and the
  message comes back when the horizon reaches it.
- **Concurrency** (expiring counted slots, :meth:`Store.queue_for_slot`): a
  task takes a slot before it runs and frees it when it ends. A slot is
  renewed every third of ``lease_time`` while its task runs, so a worker
  killed while holding one blocks the others for at most ``lease_time``. A
  task that finds every slot taken joins the key's line, under its message
  id, and waits up to ``max_wait``, woken at once when a task of this worker
  frees a slot of the same key (others' are seen at growing intervals, never
  in a busy loop); then it goes back to the broker, due again in a quarter of
  a second at the head of the line and later further back (at most 5 s). It
  keeps its place in the line meanwhile, so slots go to tasks in the order
  they first asked.

The slot is taken before the rate place, so waiting for a slot never burns a
place in the rate; a task sent back for its rate frees its slot first.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import uuid
from dataclasses import dataclass
from typing import Any

from aq.errors import AQError, BrokerError
from aq.logs import event
from aq.message import TaskMessage
from aq.options import RateLimit
from aq.task import AnyTask
from aq.transport.store import Store

__all__ = ["PLACE_HEADER", "Admission", "ClusterLimits", "Deferral", "LimitKeyFailed"]

log = logging.getLogger("aq.worker")

#: Header of a message sent back with a place reserved in its rate: the rate key.
PLACE_HEADER = "aq-rate-place"
_FIRST_PAUSE = 0.05
#: Seconds until a task at the head of a slot's line comes back; further back, longer.
_FIRST_SLOT_DELAY = 0.25
_MAX_SLOT_DELAY = 5.0
#: Seconds a task sent back keeps its place in a slot's line without asking again:
#: room for the longest delay, and for the broker to hand the message out late.
_LINE_TTL = 4 * _MAX_SLOT_DELAY


class LimitKeyFailed(AQError):
    """The task's ``limit_key`` function raised or returned something unusable."""


@dataclass(frozen=True, slots=True)
class Admission:
    """A task let in: the slot it holds while it runs, if its task has a cap."""

    slot: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Deferral:
    """A task to send back to the broker, due ``delay`` seconds from now."""

    delay: float
    reason: str


_ADMITTED = Admission()


class ClusterLimits:
    """Applies the cluster-wide limits of tasks in one worker; see the module docstring.

    Args:
        store: the broker's store (``None`` only when no task has such a limit:
            the broker refuses the options without one).
        lease_time: seconds a slot outlives a worker killed while holding it.
        max_wait: the longest a task waits inside the worker for its turn.
        horizon: how far ahead places in a rate are reserved for messages sent back.
    """

    def __init__(
        self,
        store: Store | None,
        *,
        lease_time: float = 30.0,
        max_wait: float = 0.5,
        horizon: float = 60.0,
    ) -> None:
        self.store = store
        self.lease_time = lease_time
        self.max_wait = max_wait
        self.horizon = horizon
        self._owner = uuid.uuid4().hex[:12]
        self._numbers = itertools.count()
        #: holder -> slot key, for every slot this worker holds.
        self._held: dict[str, str] = {}
        #: slot key -> resolved when a task of this worker frees a slot there, and
        #: how many tasks of this worker wait at that key.
        self._freed: dict[str, asyncio.Future[None]] = {}
        self._waiting: dict[str, int] = {}
        #: rate key -> the tasks waiting to ask for a place there.
        self._asks: dict[str, list[tuple[asyncio.Future[float | Deferral], TaskMessage]]] = {}
        #: rate key -> the task asking the store for places there (one at a time).
        self._reserving: dict[str, asyncio.Task[None]] = {}

    async def admit(self, task: AnyTask, message: TaskMessage) -> Admission | Deferral:
        """Let ``message`` run now (after a short wait at most) or say when to retry.

        Raises:
            LimitKeyFailed: the task's ``limit_key`` raised; the message cannot run.
            aq.BrokerError: the store could not be reached.
        """
        config, store = task.config, self.store
        assert store is not None, "the broker refuses cluster limits without a store"
        scope = task.name if config.limit_key is None else f"{task.name}:{_key(task, message)}"
        slot: tuple[str, str] | None = None
        cap = config.global_max_concurrency
        if cap is not None:
            key, holder = f"slots:{scope}", f"{self._owner}:{next(self._numbers)}"
            ahead = await self._take_slot(store, key, holder, message.id, cap)
            if ahead is not None:
                # The head of the line comes back soon; those further back, later.
                full = min(_MAX_SLOT_DELAY, _FIRST_SLOT_DELAY * (1 + ahead / cap))
                delay = random.uniform(0.8 * full, full)
                return Deferral(delay, f"{key} has {cap} running, {ahead} waiting ahead")
            slot = (key, holder)
            self._held[holder] = key
        rate = config.global_rate_limit
        if rate is None:
            return _ADMITTED if slot is None else Admission(slot)
        try:
            wait = await self._place(store, f"rate:{scope}", rate, message)
            if not isinstance(wait, Deferral) and wait > 0:
                await asyncio.sleep(wait)
        except BaseException:  # a store outage, a cancellation: the slot is not kept
            if slot is not None:
                await self.release(Admission(slot))
            raise
        if isinstance(wait, Deferral):
            if slot is not None:
                await self.release(Admission(slot))
            return wait
        return _ADMITTED if slot is None else Admission(slot)

    async def _take_slot(
        self, store: Store, key: str, holder: str, waiter: str, cap: int
    ) -> int | None:
        """Take a slot in turn, waiting up to ``max_wait``; ``None`` once taken, else
        how many waiters stand before this one in the line."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        pause = _FIRST_PAUSE
        self._waiting[key] = self._waiting.get(key, 0) + 1
        try:
            while True:
                turn = await store.queue_for_slot(
                    key, holder, waiter, limit=cap, ttl=self.lease_time, line_ttl=_LINE_TTL
                )
                if turn.acquired:
                    return None
                left = deadline - loop.time()
                if left <= 0:
                    return turn.ahead
                freed = self._freed.get(key)
                if freed is None:
                    freed = self._freed[key] = loop.create_future()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(freed), min(pause, left))
                pause *= 2
        finally:
            self._waiting[key] -= 1
            if not self._waiting[key]:  # nobody here waits at this key: forget it
                del self._waiting[key]
                self._freed.pop(key, None)

    async def _place(
        self, store: Store, key: str, rate: RateLimit, message: TaskMessage
    ) -> float | Deferral:
        """Seconds to wait for this message's place in the rate, or when to come back.

        One store operation at a time asks for the places of every task at
        ``key``: those that ask while it is under way are asked for together
        next, so a busy worker makes one call per round trip, not per task.
        """
        if message.headers.pop(PLACE_HEADER, None) == key:
            return 0.0  # it was given its place before it was sent back
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[float | Deferral] = loop.create_future()
        self._asks.setdefault(key, []).append((answer, message))
        if key not in self._reserving:
            asker = loop.create_task(self._reserve_while_asked(store, key, rate))
            self._reserving[key] = asker
        return await answer

    async def _reserve_while_asked(self, store: Store, key: str, rate: RateLimit) -> None:
        """Ask for the places of every task waiting for one at ``key``, and again
        for those that came while the store answered, until none waits."""
        try:
            while asks := self._asks.pop(key, None):
                await self._reserve(store, key, rate, asks)
        finally:
            del self._reserving[key]

    async def _reserve(
        self,
        store: Store,
        key: str,
        rate: RateLimit,
        asks: list[tuple[asyncio.Future[float | Deferral], TaskMessage]],
    ) -> None:
        interval = rate.period / rate.count
        try:
            decision = await store.reserve_rate(
                key,
                interval=interval,
                burst=max(1, int(rate.count)),
                max_wait=self.horizon,
                count=len(asks),
            )
        except asyncio.CancelledError:
            for answer, _ in asks:
                answer.cancel()
            raise
        except Exception as exc:  # each asking task meets it (a store outage, say)
            for answer, _ in asks:
                if not answer.done():
                    answer.set_exception(exc)
            return
        for place, (answer, message) in enumerate(asks):
            wait = decision.wait + place * interval
            if answer.done():  # its task was cancelled: the place goes unused
                continue
            if place >= decision.granted:
                late = wait - self.horizon + random.uniform(0, interval)
                answer.set_result(Deferral(late, f"{key} is booked a horizon ahead"))
            elif wait <= self.max_wait:
                answer.set_result(max(0.0, wait))
            else:
                message.headers[PLACE_HEADER] = key
                answer.set_result(Deferral(wait, f"{key} keeps its place {wait:.2f} s ahead"))

    async def release(self, admission: Admission) -> None:
        """Free the slot ``admission`` holds; a store that cannot be reached lets it
        expire instead."""
        if admission.slot is None:
            return
        key, holder = admission.slot
        self._held.pop(holder, None)
        freed = self._freed.pop(key, None)
        if freed is not None and not freed.done():
            freed.set_result(None)
        assert self.store is not None
        try:
            await self.store.release_slot(key, holder)
        except BrokerError as exc:
            event(log, logging.WARNING, "limits.release_failed", key=key, error=exc)

    async def renew(self) -> None:
        """Keep the slots of running tasks: renew each every third of ``lease_time``
        (run as a background loop of the worker)."""
        store = self.store
        assert store is not None
        while True:
            await asyncio.sleep(self.lease_time / 3)
            held = list(self._held.items())
            if not held:
                continue
            renewals = [store.renew_slot(key, holder, ttl=self.lease_time) for holder, key in held]
            results = await asyncio.gather(*renewals, return_exceptions=True)
            for (holder, key), kept in zip(held, results, strict=True):
                if kept is False and holder in self._held:
                    event(log, logging.WARNING, "limits.slot_lost", key=key, holder=holder)
                elif isinstance(kept, BaseException):
                    event(log, logging.WARNING, "limits.renew_failed", key=key, error=kept)


def _key(task: AnyTask, message: TaskMessage) -> str:
    """The task's ``limit_key`` of this message's arguments, as a string."""
    limit_key = task.config.limit_key
    assert limit_key is not None
    try:
        args, kwargs = task.argument_converter(message.args, message.kwargs)
        key: Any = limit_key(*args, **kwargs)
    except Exception as exc:
        raise LimitKeyFailed(
            f"limit_key of task {task.name!r} raised {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(key, str | int) or isinstance(key, bool):
        raise LimitKeyFailed(
            f"limit_key of task {task.name!r} returned {key!r}: return a str or an int"
        )
    return str(key)

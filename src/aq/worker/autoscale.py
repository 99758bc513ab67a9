"""``aq worker --autoscale MIN,MAX``: as many worker processes as the load calls for.

An asyncio worker process is scaled by processes, not by slots: its
``--concurrency`` stays fixed, and the supervisor runs between MIN and MAX of
them. Once a second the :class:`Autoscaler` takes a :class:`Reading`: the
backlog (messages ready in the worker's queues, from ``broker.admin``) and
each worker's load (from its pipe, :mod:`aq.worker.pulse`, and its CPU time
from ``/proc``). :func:`decide`, a pure function of the policy, what it
remembers and the reading, says up, down or hold, and why:

* **Up** by one when the backlog is not empty and not draining fast enough
  (it grew, held, or at its present rate would last longer than
  ``drain_horizon``), and every worker is saturated: its event loop lags
  (a CPU-bound task blocks it), it uses about a core of CPU, or every slot of
  it is taken; and no worker is still starting, and ``cooldown`` seconds
  passed since the last change.
* **Down** by one when the backlog has been empty and the newest worker idle
  for ``scale_down_after`` seconds. That worker stops gracefully (its running
  tasks finish) and is not replaced.

Every change is logged, ``autoscale.up`` or ``autoscale.down``, with the
number of processes it leads to and its reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from aq.broker import Broker
from aq.errors import ConfigurationError
from aq.logs import event
from aq.worker.pulse import Load
from aq.worker.supervisor import Supervisor

__all__ = ["Autoscaler", "Decision", "History", "Policy", "Reading", "WorkerLoad", "decide"]

log = logging.getLogger("aq.supervisor")

_TICK = 1.0  # seconds between readings
_STALE = 2.0  # a report older than this says the child's loop is blocked
_BACKLOG_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class Policy:
    """When to scale.

    Raises:
        aq.ConfigurationError: MIN is below 1, or above MAX.
    """

    minimum: int
    maximum: int
    #: Seconds of an empty backlog and an idle newest worker before it stops.
    scale_down_after: float = 30.0
    #: Seconds between one change and the next scale-up.
    cooldown: float = 2.0
    #: Event-loop lag (seconds) that makes a worker saturated.
    lag: float = 0.1
    #: Share of one core of CPU that makes a worker saturated.
    cpu: float = 0.85
    #: A backlog that would last longer than this at its present rate of fall
    #: is not draining fast enough.
    drain_horizon: float = 10.0

    def __post_init__(self) -> None:
        if self.minimum < 1:
            raise ConfigurationError(
                f"--autoscale MIN must be at least 1 (one worker always runs), not {self.minimum}"
            )
        if self.maximum < self.minimum:
            raise ConfigurationError(
                f"--autoscale MIN,MAX needs MIN <= MAX, not {self.minimum},{self.maximum}: "
                f"write --autoscale {self.maximum},{self.minimum}"
            )
        if not self.scale_down_after > 0:
            raise ConfigurationError("--scale-down-after must be a positive number of seconds")

    @classmethod
    def parse(cls, text: str, scale_down_after: float | None = None) -> Policy:
        """The policy of ``--autoscale MIN,MAX`` (and ``--scale-down-after``, if given).

        Raises:
            aq.ConfigurationError: ``text`` is not two whole numbers MIN <= MAX, MIN >= 1.
        """
        parts = text.split(",")
        try:
            minimum, maximum = (int(p.strip()) for p in parts)
        except ValueError:
            raise ConfigurationError(
                f"--autoscale takes MIN,MAX, two whole numbers of processes such as 1,4; "
                f"not {text!r}"
            ) from None
        if scale_down_after is None:
            return cls(minimum, maximum)
        return cls(minimum, maximum, scale_down_after)


@dataclass(frozen=True, slots=True)
class WorkerLoad:
    """One worker process's load."""

    #: How late its event loop was (seconds).
    lag: float
    in_flight: int
    concurrency: int
    #: Its share of one core over the last second, if known.
    cpu: float | None = None

    def saturation(self, policy: Policy) -> str | None:
        """Why this worker is saturated, or None if it is not."""
        if self.lag > policy.lag:
            return f"event-loop lag {self.lag:.2f} s"
        if self.cpu is not None and self.cpu >= policy.cpu:
            return f"CPU {self.cpu:.2f} core"
        if self.in_flight >= self.concurrency:
            return f"every slot taken ({self.in_flight}/{self.concurrency})"
        return None


@dataclass(frozen=True, slots=True)
class Reading:
    """What the autoscaler sees at one moment."""

    #: When (time.monotonic()).
    at: float
    #: Messages ready in the worker's queues; None when the broker did not answer.
    backlog: int | None
    #: Each worker's load, oldest first; None for one not reporting yet (starting).
    workers: tuple[WorkerLoad | None, ...]


@dataclass(frozen=True, slots=True)
class History:
    """What :func:`decide` remembers from one reading to the next."""

    #: When the number of processes last changed.
    changed_at: float = float("-inf")
    #: The previous reading's backlog, and when it was read.
    backlog: int | None = None
    backlog_at: float = 0.0
    #: Since when the backlog is empty and the newest worker idle.
    idle_since: float | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """Up (+1), down (-1) or hold (0), and why."""

    change: Literal[-1, 0, 1]
    reason: str


def decide(policy: Policy, history: History, reading: Reading) -> tuple[Decision, History]:
    """Whether to add a worker process, retire one, or hold; and what to remember."""
    now, backlog = reading.at, reading.backlog
    remembered = dataclasses.replace(history, backlog=backlog, backlog_at=now)
    if backlog is None:
        decision = _hold("the backlog is unknown")
        remembered = dataclasses.replace(remembered, idle_since=None)
    elif backlog > 0:
        decision = _up(policy, history, reading, backlog)
        remembered = dataclasses.replace(remembered, idle_since=None)
    else:
        decision, remembered = _down(policy, remembered, reading)
    if decision.change:
        remembered = dataclasses.replace(remembered, changed_at=now, idle_since=None)
    return decision, remembered


def _up(policy: Policy, history: History, reading: Reading, backlog: int) -> Decision:
    workers = reading.workers
    if len(workers) >= policy.maximum:
        return _hold(f"at the maximum of {policy.maximum} processes")
    if any(w is None for w in workers):
        return _hold("a worker is starting")
    if reading.at - history.changed_at < policy.cooldown:
        return _hold("cooling down after the last change")
    trend = _trend(policy, history, reading.at, backlog)
    if trend is None:
        return _hold(f"backlog {backlog} draining fast enough")
    loads = [w for w in workers if w is not None]
    if not all(w.saturation(policy) for w in loads):
        return _hold(f"backlog {backlog} {trend}, but not every worker is saturated")
    return Decision(1, f"backlog {backlog} {trend}; {_saturation(loads)}")


def _trend(policy: Policy, history: History, now: float, backlog: int) -> str | None:
    """How the backlog moves, if it is not draining fast enough (else None)."""
    if history.backlog is None or now <= history.backlog_at:
        return "and no trend yet" if backlog else None
    if backlog > history.backlog:
        return "and growing"
    rate = (history.backlog - backlog) / (now - history.backlog_at)
    if rate <= 0:
        return "and not shrinking"
    left = backlog / rate
    if left <= policy.drain_horizon:
        return None
    return f"draining {rate:.1f}/s (about {left:.0f} s to empty)"


def _saturation(loads: Sequence[WorkerLoad]) -> str:
    lag = max(w.lag for w in loads)
    taken = sum(w.in_flight for w in loads)
    slots = sum(w.concurrency for w in loads)
    parts = [f"event-loop lag {lag:.2f} s"]
    cpus = [w.cpu for w in loads if w.cpu is not None]
    if cpus:
        parts.append(f"CPU {max(cpus):.2f} core")
    parts.append(f"slots {taken}/{slots}")
    return "workers saturated: " + ", ".join(parts)


def _down(policy: Policy, history: History, reading: Reading) -> tuple[Decision, History]:
    workers = reading.workers
    if len(workers) <= policy.minimum:
        return _hold(f"at the minimum of {policy.minimum}"), history
    newest = workers[-1]
    if newest is None or newest.in_flight:
        return _hold("the newest worker is busy"), dataclasses.replace(history, idle_since=None)
    now = reading.at
    idle_since = history.idle_since if history.idle_since is not None else now
    idle = now - max(idle_since, history.changed_at)
    history = dataclasses.replace(history, idle_since=idle_since)
    if idle < policy.scale_down_after:
        return _hold(f"idle for {idle:.0f} s"), history
    reason = f"backlog 0 and the newest worker idle for {idle:.0f} s"
    return Decision(-1, reason), history


def _hold(reason: str) -> Decision:
    return Decision(0, reason)


class Autoscaler:
    """Reads the load once a second and scales the supervisor's workers (a companion).

    Args:
        policy: when to scale.
        broker: the app's broker, for the backlog (connected on first use).
        queues: the worker's queues.
    """

    def __init__(self, policy: Policy, broker: Broker, queues: Sequence[str]) -> None:
        self.policy = policy
        self.broker = broker
        self.queues = list(queues)
        self._cpu: dict[int, tuple[float, float]] = {}  # pid -> (CPU seconds, when)
        self._blind = False  # the backlog could not be read last time

    async def __call__(self, supervisor: Supervisor) -> None:
        """Scale ``supervisor``'s workers until cancelled."""
        history = History()
        try:
            while True:
                await asyncio.sleep(_TICK)
                backlog = await self._backlog()
                slots = supervisor.worker_slots()
                loads = self._loads(supervisor, slots)
                reading = Reading(time.monotonic(), backlog, loads)
                decision, history = decide(self.policy, history, reading)
                if decision.change:
                    self._act(supervisor, slots, decision)
        finally:
            with contextlib.suppress(Exception):
                await self.broker.shutdown()

    def _act(self, supervisor: Supervisor, slots: list[int], decision: Decision) -> None:
        if decision.change > 0:
            if supervisor.add_worker() is None:
                return  # stopping, or its workers are told to shut down (it says so)
            what, processes = "autoscale.up", len(slots) + 1
        else:
            supervisor.retire_worker(slots[-1])
            what, processes = "autoscale.down", len(slots) - 1
        event(log, logging.INFO, what, processes=processes, reason=decision.reason)

    async def _backlog(self) -> int | None:
        try:
            async with asyncio.timeout(_BACKLOG_TIMEOUT):
                await self.broker.connect()
                stats = [await self.broker.admin.stats(q) for q in self.queues]
        except Exception as exc:
            if not self._blind:
                event(log, logging.WARNING, "autoscale.blind", error=exc, note="holding")
            self._blind = True
            return None
        self._blind = False
        return sum(s.ready for s in stats)

    def _loads(self, supervisor: Supervisor, slots: list[int]) -> tuple[WorkerLoad | None, ...]:
        now = time.monotonic()
        loads: list[WorkerLoad | None] = []
        for slot in slots:
            child = supervisor.children.get(slot)
            load = None if child is None or not child.running else child.pipe.load
            if child is None or load is None:
                loads.append(None)
                continue
            loads.append(_load(load, now - child.pipe.load_at, self._cpu_share(child.proc.pid)))
        alive = {c.proc.pid for c in supervisor.children.values()}
        for pid in set(self._cpu) - alive:
            del self._cpu[pid]
        return tuple(loads)

    def _cpu_share(self, pid: int) -> float | None:
        """The share of one core ``pid`` used since the last reading."""
        used = cpu_seconds(pid)
        if used is None:
            return None
        now = time.monotonic()
        before = self._cpu.get(pid)
        self._cpu[pid] = (used, now)
        if before is None or now <= before[1]:
            return None
        return (used - before[0]) / (now - before[1])


def _load(load: Load, age: float, cpu: float | None) -> WorkerLoad:
    # A child whose loop is blocked cannot report: its silence is its lag.
    lag = max(load.lag, age - _TICK if age > _STALE else 0.0)
    return WorkerLoad(lag, load.in_flight, load.concurrency, cpu)


def cpu_seconds(pid: int) -> float | None:
    """The CPU time (user and system) process ``pid`` used so far, from /proc (Linux)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rpartition(b")")[2].split()
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    except (OSError, ValueError, IndexError):
        return None


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

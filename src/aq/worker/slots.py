"""The slots of ``aq worker``'s supervisor, each kept filled by a task of its own.

A slot (``0`` to ``processes - 1``, ``isolation``) runs one child process
(:mod:`aq.worker.children`). Its keeper, a task, starts the child, waits for
it to exit, and starts the next one, unless the slot stays empty (the
supervisor stops, the slot is retired, or the supervisor's rules on exit
statuses say so: :meth:`SlotKeeper._stays_empty`).

**Restarts.** Each child reports, on a pipe of its own, once it consumes (and
its load after that: :mod:`aq.worker.pulse`). A child that dies after that is
restarted at once (or one second after it started, if it lived less): a task
that kills its process must not stall the queue, and the crash policy keeps
such a task from killing the next process for long. A child that dies before
it ever consumed (a broker that refuses it, an app that no longer imports),
or that cannot be started at all, is tried again after a delay that starts at
0.5 s and doubles up to 30 s, so it does not spin; a clean exit
(``--max-tasks-per-child``, ``--max-memory-per-child``) restarts at once too.

**One child to a slot.** Besides its keeper, only renewal (``--reload``)
puts a child in a slot, and only while the slot's child runs. A keeper that
finds such a child in its slot, after its own child exited, after a pause or
after starting a child, follows it rather than starting (or keeping) another;
a slot retired while its child starts has that child stopped at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from aq.logs import event
from aq.worker import children
from aq.worker.children import Child, Slot

if TYPE_CHECKING:
    from aq.monitor.fleet import FleetMetrics

__all__ = ["SlotKeeper"]

log = logging.getLogger("aq.supervisor")

_BACKOFF_START = 0.5
_BACKOFF_MAX = 30.0
_MIN_LIFE = 1.0  # a child that consumed is restarted at once, but not oftener than this
_READY_WAIT = 1.0  # after a child exits, how long its report of readiness may take


class SlotKeeper:
    """Keeps each slot filled with a child process (see the module docstring);
    the base of :class:`~aq.worker.supervisor.Supervisor`.

    Args:
        slots: each slot, and the arguments after ``python -m aq`` of its child.
        shutdown_timeout: a child's grace period; it is killed 5 s after that.
    """

    def __init__(self, slots: dict[Slot, list[str]], shutdown_timeout: float) -> None:
        self.slots = slots
        self.shutdown_timeout = shutdown_timeout
        #: The child serving each slot (perhaps exited, until it is replaced).
        self.children: dict[Slot, Child] = {}
        self.metrics: FleetMetrics | None = None
        self.restarts = 0
        #: Set once the supervisor is stopping.
        self.stopping = asyncio.Event()
        self._keepers: dict[Slot, asyncio.Task[None]] = {}
        self._leaving: set[Slot] = set()  # retired by retire_worker: not replaced
        self._starting: set[Child] = set()  # started by renew, not yet in a slot
        self._wake: dict[Slot, asyncio.Event] = {}  # cuts a slot's pause short
        self._draining = children.Draining(shutdown_timeout)
        # The isolation slot's renew: its keeper's next child, once started.
        self._successors: dict[Slot, asyncio.Future[Child | None]] = {}

    def _stays_empty(self, slot: Slot, child: Child, code: int) -> bool:
        """Whether ``slot`` stays empty after its ``child`` exited with ``code``
        (the supervisor's rules on exit statuses)."""
        return False

    def _on_ready(self, slot: Slot) -> None:
        """The child of ``slot`` reported ready."""

    def _ends(self, slot: Slot, child: Child, code: int) -> bool:
        if self.stopping.is_set():
            return True
        if slot in self._leaving:
            event(log, logging.INFO, "supervisor.child_retired", slot=slot, pid=child.proc.pid)
            return True
        return self._stays_empty(slot, child, code)

    def _keep(self, slot: Slot) -> None:
        self._keepers[slot] = asyncio.create_task(self._keep_alive(slot))

    async def _keep_alive(self, slot: Slot) -> None:
        try:
            await self._keep_filled(slot)
        finally:
            self._succeed(slot, None)

    async def _keep_filled(self, slot: Slot) -> None:
        """Restart the child of ``slot`` each time it exits (see the module docstring)."""
        backoff = _BACKOFF_START
        last: Child | None = None  # the latest child whose exit was handled
        while not self.stopping.is_set():
            child = self._renewed(slot, last)  # followed even if retired: it is stopping
            if child is None:
                if slot in self._leaving:
                    break
                try:
                    child = await self._start(slot, last)
                except OSError as exc:  # out of file descriptors or memory: try again
                    event(log, logging.ERROR, "supervisor.start_failed", slot=slot, error=exc)
                    await self._pause(slot, backoff)
                    backoff = min(_BACKOFF_MAX, backoff * 2)
                    continue
            last, code = await self._wait_exit(child)
            was_ready = await last.pipe.got_ready(_READY_WAIT)
            await self._exited(last)
            if self._ends(slot, last, code):
                break
            uptime = self._log_exit(last, code, was_ready)
            if slot in self._successors:  # renewed: its successor starts at once
                delay = 0.0
            elif code == 0 or was_ready:
                backoff = _BACKOFF_START
                # At once, but not in a hot loop if it dies as soon as it consumes.
                delay = _MIN_LIFE - uptime
            else:  # it never got going: wait before trying again, growing each time
                delay, backoff = backoff, min(_BACKOFF_MAX, backoff * 2)
            if self._renewed(slot, last) is None:  # else renew filled it meanwhile
                await self._pause(slot, delay)
        if slot in self._leaving:
            self._forget(slot)

    async def _start(self, slot: Slot, last: Child | None) -> Child:
        """Start a child and put it in ``slot``; or, if renew put one there while it
        started, drop it and take renew's.

        Raises:
            OSError: it could not be started.
        """
        child = await self._spawn(slot)
        renewed = self._renewed(slot, last)
        if renewed is not None:
            self._drop(child)
            return renewed
        self.children[slot] = child
        if slot in self._leaving:  # retired while it started: it stops at once
            children.terminate(child)
        self._succeed(slot, child)
        return child

    def _renewed(self, slot: Slot, last: Child | None) -> Child | None:
        """The child renew put in ``slot`` since ``last`` (the keeper's latest), if any."""
        child = self.children.get(slot)
        return child if child is not None and child is not last else None

    def _succeed(self, slot: Slot, child: Child | None) -> None:
        """Hand the isolation slot's renew its new child (None: there is none)."""
        successor = self._successors.get(slot)
        if successor is not None and not successor.done():
            successor.set_result(child)

    def _log_exit(self, child: Child, code: int, was_ready: bool) -> float:
        """Log the exit of a child to be replaced; its uptime."""
        uptime = time.monotonic() - child.started
        if child.slot in self._successors:
            what, level = "supervisor.child_replaced", logging.INFO
        else:
            self.restarts += 1
            what = "supervisor.child_exited"
            level = logging.INFO if code == 0 else logging.ERROR
        event(
            log,
            level,
            what,
            slot=child.slot,
            pid=child.proc.pid,
            code=code,
            uptime=uptime,
            consumed=was_ready,
        )
        return uptime

    async def _wait_exit(self, child: Child) -> tuple[Child, int]:
        """Wait until the child serving ``child``'s slot exits, following the slot
        to each child that renew() puts in it; that child and its exit code."""
        while True:
            code = await child.proc.wait()
            current = self.children.get(child.slot)
            if current is None or current is child:
                return child, code
            # Renewed: the old child drained, and its successor runs (if it died
            # meanwhile, its exit is seen at once below).
            await self._exited(child)
            event(
                log,
                logging.INFO,
                "supervisor.child_replaced",
                slot=child.slot,
                pid=child.proc.pid,
                code=code,
            )
            child = current

    async def _exited(self, child: Child) -> None:
        await child.pipe.close()
        if self.metrics is not None:
            self.metrics.child_exited(child.proc.pid)

    async def _pause(self, slot: Slot, seconds: float) -> None:
        """Wait ``seconds``, or less if the supervisor stops or the slot is nudged."""
        if seconds <= 0:
            return
        wake = self._wake[slot] = asyncio.Event()
        if self.stopping.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), seconds)

    def _nudge(self, slot: Slot) -> None:
        wake = self._wake.get(slot)
        if wake is not None:
            wake.set()

    async def _spawn(self, slot: Slot) -> Child:
        """Start a child for ``slot`` (not yet put in it)."""
        child = await children.spawn(slot, self.slots[slot], lambda: self._on_ready(slot))
        if self.stopping.is_set():  # started while shutdown began: stop it too
            children.terminate(child)
        return child

    def _stop_child(self, child: Child) -> None:
        """Stop ``child`` gracefully, in the background."""
        self._draining.add(child)

    def _drop(self, child: Child) -> None:
        """Stop a child that serves no slot (so no keeper closes its pipe)."""
        self._draining.add(child, self._exited)

    def _all_children(self) -> list[Child]:
        """Every child not known to have exited: in a slot, starting, or draining."""
        return list(dict.fromkeys([*self.children.values(), *self._starting, *self._draining]))

    def _forget(self, slot: Slot) -> None:
        self._leaving.discard(slot)
        self.slots.pop(slot, None)
        self.children.pop(slot, None)
        self._wake.pop(slot, None)
        self._keepers.pop(slot, None)

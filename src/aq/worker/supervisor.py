"""``aq worker``'s supervisor: one process keeping its worker processes alive.

The supervisor starts each worker as a child process running ``aq worker``
(``--supervised``), plus, for network brokers, one isolation worker
(``--isolation``) that runs the tasks whose workers died while they ran, one
at a time (see :mod:`aq.worker.crashes`). It restarts any child that exits,
and on SIGTERM or SIGINT asks every child to stop gracefully, killing those
still alive after their grace period. Each child reads a pipe from the
supervisor, so if the supervisor dies the children stop rather than linger.

**Exit statuses.** Each child runs in a slot, which its keeper refills as
each child exits (:mod:`aq.worker.slots`, where the restarts and their
back-off are). A child that exits with :data:`EXIT_SHUT_DOWN` was told to stop (``aq control
shutdown``): it is not replaced (but for the isolation worker while others
run), no worker is added any more, and once every worker has been told (or
has otherwise left), the supervisor stops too, and ``aq worker`` exits with
that status, so that a process manager does not start it again. A worker
that exits with :data:`EXIT_STARTUP_FAILED` before any worker was ever ready
stops the supervisor (``aq worker`` exits with it: it would fail the same way
for ever); after that, it is a crash like any other. The isolation worker
neither counts nor triggers that rule: its failures are restarted with the
back-off, so that a worker without a supervisor (``--no-supervise``) keeps
its isolation worker.

**Companions.** Running beside the supervisor, they change its slots:
:meth:`Supervisor.add_worker` and :meth:`Supervisor.retire_worker` for
``--autoscale`` (a retired slot's child stops gracefully and is not
replaced), and :meth:`Supervisor.renew` for ``--reload`` (a new worker takes
over the slot once it is ready, and the old one then stops gracefully; the
isolation worker, which runs one message at a time, stops before its
successor starts). A slot has one child: renew drops its new child if the
slot was restarted or retired while that child started.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from aq.logs import event
from aq.worker import children
from aq.worker.children import Child, Slot
from aq.worker.slots import SlotKeeper

if TYPE_CHECKING:
    from aq.monitor.fleet import FleetMetrics

__all__ = [
    "EXIT_SHUT_DOWN",
    "EXIT_STARTUP_FAILED",
    "ISOLATION_SLOT",
    "Child",
    "Companion",
    "Slot",
    "Supervisor",
]

log = logging.getLogger("aq.supervisor")

#: The exit code of a worker stopped by ``aq control shutdown``.
EXIT_SHUT_DOWN = 3
#: The exit code of a worker whose start-up hooks (``@broker.on_startup``) failed.
EXIT_STARTUP_FAILED = 4

ISOLATION_SLOT = "isolation"

#: Something that runs beside the supervisor until cancelled (``--reload``, ``--autoscale``).
Companion = Callable[["Supervisor"], Awaitable[None]]


class Supervisor(SlotKeeper):
    """Keeps worker processes alive; see the module docstring.

    Args:
        child_args: the arguments after ``python -m aq`` that start one worker.
        processes: how many workers to keep running (0 with ``--no-supervise``,
            where the worker runs in the supervising process itself).
        shutdown_timeout: a child's grace period; it is killed 5 s after that.
        isolation_args: the arguments that start the isolation worker, or
            ``None`` to run none.
        metrics: the metrics port serving every child's metrics and health
            (``--metrics-port``), or ``None``.
        companions: run beside the supervisor, and cancelled when it stops.
    """

    def __init__(
        self,
        child_args: Sequence[str],
        processes: int,
        shutdown_timeout: float,
        isolation_args: Sequence[str] | None = None,
        metrics: Callable[[Supervisor], FleetMetrics] | None = None,
        companions: Sequence[Companion] = (),
    ) -> None:
        slots: dict[Slot, list[str]] = {slot: list(child_args) for slot in range(processes)}
        if isolation_args is not None:
            slots[ISOLATION_SLOT] = list(isolation_args)
        super().__init__(slots, shutdown_timeout)
        self.child_args = list(child_args)
        self.processes = processes
        #: Built before any child starts (it sets their metrics directory).
        self.metrics = metrics(self) if metrics is not None else None
        self.companions = list(companions)
        #: Slots whose workers were told to shut down, and are not replaced.
        self.retired: set[Slot] = set()
        #: Whether every worker was told to shut down (the command exits with 3).
        self.shut_down = False
        #: Whether a child's start-up hooks failed before any child was ready
        #: (the command exits with EXIT_STARTUP_FAILED).
        self.startup_failed = False
        #: Whether any worker (not the isolation worker) ever reported ready.
        self.ever_ready = False
        self._next_slot = processes

    async def run(self, *, handle_signals: bool = True) -> None:
        """Supervise until SIGTERM or SIGINT (or :meth:`stop`), then stop every child."""
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT) if handle_signals else ()
        for sig in signals:
            loop.add_signal_handler(sig, self.on_signal)
        event(
            log,
            logging.INFO,
            "supervisor.started",
            processes=self.processes,
            isolation=ISOLATION_SLOT in self.slots,
        )
        if self.metrics is not None:
            await self.metrics.start()
        for slot in self.slots:
            self._keep(slot)
        companions = [asyncio.create_task(self._accompany(c)) for c in self.companions]
        try:
            await self.stopping.wait()
            for task in companions:
                task.cancel()
            await asyncio.gather(*companions, return_exceptions=True)
            await self._stop_children()
            await asyncio.gather(*self._keepers.values(), return_exceptions=True)
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
            for task in [*companions, *self._keepers.values()]:
                task.cancel()
            self._draining.cancel()
            if self.metrics is not None:
                await self.metrics.close()
        event(log, logging.INFO, "supervisor.stopped", restarts=self.restarts)

    def stop(self) -> None:
        """Ask the supervisor to stop (as SIGTERM does)."""
        self.stopping.set()
        for wake in self._wake.values():
            wake.set()

    def on_signal(self) -> None:
        """SIGTERM or SIGINT: stop; a second one hurries the children along."""
        if not self.stopping.is_set():
            self.stop()
            return
        # A second signal: pass it on, and each child cuts its grace period short.
        event(log, logging.WARNING, "supervisor.hurry")
        self._signal_children()

    def live_children(self) -> list[tuple[int, float]]:
        """(pid, start time) of each child still running."""
        return [(c.proc.pid, c.started) for c in self._all_children() if c.running]

    def worker_slots(self) -> list[int]:
        """The worker slots kept filled (not the isolation worker's, nor those
        retired), oldest first."""
        return sorted(
            s for s in self.slots if isinstance(s, int) and s not in self._leaving | self.retired
        )

    def add_worker(self) -> int | None:
        """Start one more worker, in a new slot; the slot, or None when stopping or
        once a worker was told to shut down (the supervisor waits for the rest
        to go; a new one would keep it running)."""
        if self.stopping.is_set():
            return None
        if self.retired:
            event(
                log,
                logging.INFO,
                "supervisor.add_refused",
                note="a worker was told to shut down (aq control shutdown): no worker is "
                "added, and aq worker stops once the others have gone",
            )
            return None
        slot = self._next_slot
        self._next_slot += 1
        self.slots[slot] = list(self.child_args)
        self._keep(slot)
        return slot

    def retire_worker(self, slot: int) -> None:
        """Stop the worker of ``slot`` gracefully, and leave the slot empty."""
        self._leaving.add(slot)
        child = self.children.get(slot)
        if child is not None and child.running:
            self._stop_child(child)
        else:
            self._nudge(slot)  # paused before a restart: it ends there

    async def renew(self, slot: Slot) -> int | None:
        """Replace the child of ``slot`` with a new one, without a gap: the new
        child starts, and once it is ready the old one stops gracefully. If the
        new child exits before it is ready, the old one keeps serving, and its
        exit code is returned (None otherwise). A slot whose child is not
        running (it is paused before a restart) is restarted now instead; a
        retired slot is left alone. If the slot is restarted or retired while
        the new child starts, the new child is stopped: the slot has one child.

        The isolation worker runs one message at a time, so its slot is renewed
        the other way round: the old child stops gracefully first, then the new
        one starts (see :meth:`_renew_in_turn`).

        Raises:
            OSError: the new child could not be started.
        """
        current = self.children.get(slot)
        if slot not in self.slots or slot in self._leaving or slot in self.retired:
            return None
        if current is None or not current.running:
            self._nudge(slot)
            return None
        if slot == ISOLATION_SLOT:
            return await self._renew_in_turn(slot, current)
        new = await self._spawn(slot)
        self._starting.add(new)  # until it has the slot, a stop stops it too
        exited = asyncio.ensure_future(new.proc.wait())
        if not await new.pipe.wait_ready(exited):
            self._starting.discard(new)
            code = await exited
            await self._exited(new)
            return code
        exited.cancel()
        if self.stopping.is_set():
            return None  # it stops with the others
        self._starting.discard(new)
        if self.children.get(slot) is not current or slot in self._leaving:
            # Restarted (its keeper's child has the new code too) or retired.
            self._drop(new)
            event(log, logging.INFO, "supervisor.renew_dropped", slot=slot, pid=new.proc.pid)
            return None
        self.children[slot] = new  # the slot's keeper follows it from now on
        self._nudge(slot)  # a keeper paused after the old child died takes it at once
        if current.running:
            self._stop_child(current)
        event(
            log,
            logging.INFO,
            "supervisor.child_renewed",
            slot=slot,
            pid=new.proc.pid,
            replaces=current.proc.pid,
        )
        return None

    async def _renew_in_turn(self, slot: Slot, current: Child) -> int | None:
        """Renew ``slot`` by stopping its child gracefully, then waiting for the
        one its keeper starts at once; that child's exit code if it exits before
        it is ready (its keeper restarts it), else None."""
        successor: asyncio.Future[Child | None] = asyncio.get_running_loop().create_future()
        self._successors[slot] = successor
        self._stop_child(current)
        try:
            new = await successor
        finally:
            if self._successors.get(slot) is successor:
                del self._successors[slot]
        if new is None:  # the supervisor stops
            return None
        exited = asyncio.ensure_future(new.proc.wait())
        if not await new.pipe.wait_ready(exited):
            return await exited
        exited.cancel()
        event(
            log,
            logging.INFO,
            "supervisor.child_renewed",
            slot=slot,
            pid=new.proc.pid,
            replaces=current.proc.pid,
        )
        return None

    def _signal_children(self) -> None:
        for child in self._all_children():
            children.terminate(child)

    async def _accompany(self, companion: Companion) -> None:
        try:
            await companion(self)
        except Exception as exc:  # the workers go on without it
            event(log, logging.ERROR, "supervisor.companion_failed", exc_info=exc, error=exc)

    def _on_ready(self, slot: Slot) -> None:
        if slot != ISOLATION_SLOT:
            self.ever_ready = True

    def _forget(self, slot: Slot) -> None:
        super()._forget(slot)
        self._stop_if_all_told()  # it may have been the last one not told

    def _stays_empty(self, slot: Slot, child: Child, code: int) -> bool:
        if code == EXIT_SHUT_DOWN and self._retire(slot, child.proc.pid):
            return True
        if code == EXIT_STARTUP_FAILED and slot != ISOLATION_SLOT and not self.ever_ready:
            self._give_up(slot, child.proc.pid)
            return True
        return False

    def _retire(self, slot: Slot, pid: int) -> bool:
        """Leave ``slot`` empty, its worker told to shut down; whether it stays
        empty. The isolation worker alone is started again, since the workers
        left still need it."""
        event(log, logging.INFO, "supervisor.child_shut_down", slot=slot, pid=pid)
        if slot == ISOLATION_SLOT and not self.shut_down:
            return False
        self.retired.add(slot)
        self._stop_if_all_told()
        return True

    def _stop_if_all_told(self) -> None:
        """Once a worker was told to shut down and every other worker slot was
        too (or was retired), the supervisor stops (and the isolation worker)."""
        if self.stopping.is_set() or not self.retired:
            return
        if all(s in self.retired for s in self.slots if s != ISOLATION_SLOT):
            self.shut_down = True
            self.stop()

    def _give_up(self, slot: Slot, pid: int) -> None:
        event(
            log,
            logging.ERROR,
            "supervisor.startup_failed",
            slot=slot,
            pid=pid,
            code=EXIT_STARTUP_FAILED,
            note="the app's start-up hooks failed before any worker was ready; it would "
            "fail the same way again, so aq worker stops (exit status 4)",
        )
        self.startup_failed = True
        self.stop()

    async def _stop_children(self) -> None:
        """Stop every child gracefully; those already stopping are waited for
        (a second SIGTERM would cut their grace period short)."""
        rest = [c for c in self._all_children() if c not in self._draining]
        await asyncio.gather(children.stop(rest, self.shutdown_timeout), self._draining.wait())
        for child in list(self._starting):
            await self._exited(child)

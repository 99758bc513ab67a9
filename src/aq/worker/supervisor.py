"""``aq worker``'s supervisor: one process keeping its worker processes alive.

The supervisor starts each worker as a child process running ``aq worker``
(``--supervised``), plus, for network brokers, one isolation worker
(``--isolation``) that runs the tasks whose workers died while they ran, one
at a time (see :mod:`aq.worker.crashes`). It restarts any child that exits,
and on SIGTERM or SIGINT asks every child to stop gracefully, killing those
still alive after their grace period. Each child reads a pipe from the
supervisor, so if the supervisor dies the children stop rather than linger.

**Restarts.** Each child reports, on a pipe of its own, once it consumes (and
its load after that: :mod:`aq.worker.pulse`). A child that dies after that is
restarted at once (or one second after it started, if it lived less): a task
that kills its process must not stall the queue, and the crash policy keeps
such a task from killing the next process for long. A child that dies before
it ever consumed (a broker that refuses it, an app that no longer imports),
or that cannot be started at all, is tried again after a delay that starts at
0.5 s and doubles up to 30 s, so it does not spin; a clean exit
(``--max-tasks-per-child``, ``--max-memory-per-child``) restarts at once too.
A child that exits with :data:`EXIT_SHUT_DOWN` was told to stop (``aq control
shutdown``): it is not replaced (but for the isolation worker while others
run), and once every worker has been told, the supervisor stops too, and ``aq
worker`` exits with that status, so that a process manager does not start it
again. A child that exits with :data:`EXIT_STARTUP_FAILED` before any child
was ever ready stops the supervisor (``aq worker`` exits with it: it would
fail the same way for ever); after that, it is a crash like any other.

**Slots.** Each child runs in a slot: ``0`` to ``processes - 1``, and
``isolation``. Companions running beside the supervisor change them:
:meth:`Supervisor.add_worker` and :meth:`Supervisor.retire_worker` for
``--autoscale`` (a retired slot's child stops gracefully and is not
replaced), and :meth:`Supervisor.renew` for ``--reload`` (a new child takes
over the slot once it is ready; the old one then stops gracefully).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from aq.logs import event
from aq.worker import children
from aq.worker.children import Child, Slot

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

_BACKOFF_START = 0.5
_BACKOFF_MAX = 30.0
_MIN_LIFE = 1.0  # a child that consumed is restarted at once, but not oftener than this
_READY_WAIT = 1.0  # after a child exits, how long its report of readiness may take
ISOLATION_SLOT = "isolation"

#: Something that runs beside the supervisor until cancelled (``--reload``, ``--autoscale``).
Companion = Callable[["Supervisor"], Awaitable[None]]


class Supervisor:
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
        self.child_args = list(child_args)
        self.slots: dict[Slot, list[str]] = {slot: list(child_args) for slot in range(processes)}
        if isolation_args is not None:
            self.slots[ISOLATION_SLOT] = list(isolation_args)
        self.processes = processes
        self.shutdown_timeout = shutdown_timeout
        #: The child serving each slot (perhaps exited, until it is replaced).
        self.children: dict[Slot, Child] = {}
        #: Built before any child starts (it sets their metrics directory).
        self.metrics = metrics(self) if metrics is not None else None
        self.companions = list(companions)
        self.restarts = 0
        #: Slots whose workers were told to shut down, and are not replaced.
        self.retired: set[Slot] = set()
        #: Whether every worker was told to shut down (the command exits with 3).
        self.shut_down = False
        #: Whether a child's start-up hooks failed before any child was ready
        #: (the command exits with EXIT_STARTUP_FAILED).
        self.startup_failed = False
        #: Whether any child ever reported ready.
        self.ever_ready = False
        #: Set once the supervisor is stopping.
        self.stopping = asyncio.Event()
        self._next_slot = processes
        self._keepers: dict[Slot, asyncio.Task[None]] = {}
        self._leaving: set[Slot] = set()  # retired by retire_worker: not replaced
        self._starting: set[Child] = set()  # started by renew, not yet in a slot
        self._wake: dict[Slot, asyncio.Event] = {}  # cuts a slot's pause short
        self._stopping_children: set[asyncio.Task[None]] = set()

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
            for task in [*companions, *self._keepers.values(), *self._stopping_children]:
                task.cancel()
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
        """Start one more worker, in a new slot; the slot, or None when stopping."""
        if self.stopping.is_set():
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
        running (it is paused before a restart) is restarted now instead.

        Raises:
            OSError: the new child could not be started.
        """
        current = self.children.get(slot)
        if current is None or not current.running:
            self._nudge(slot)
            return None
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
        old = self.children.get(slot)
        self.children[slot] = new  # the slot's keeper follows it from now on
        if old is not None and old.running:
            self._stop_child(old)
        event(
            log,
            logging.INFO,
            "supervisor.child_renewed",
            slot=slot,
            pid=new.proc.pid,
            replaces=old.proc.pid if old is not None else None,
        )
        return None

    def _all_children(self) -> list[Child]:
        return [*self.children.values(), *self._starting]

    def _signal_children(self) -> None:
        for child in self._all_children():
            children.terminate(child)

    def _keep(self, slot: Slot) -> None:
        self._keepers[slot] = asyncio.create_task(self._keep_alive(slot))

    async def _accompany(self, companion: Companion) -> None:
        try:
            await companion(self)
        except Exception as exc:  # the workers go on without it
            event(log, logging.ERROR, "supervisor.companion_failed", exc_info=exc, error=exc)

    def _on_ready(self) -> None:
        self.ever_ready = True

    def _nudge(self, slot: Slot) -> None:
        wake = self._wake.get(slot)
        if wake is not None:
            wake.set()

    async def _keep_alive(self, slot: Slot) -> None:
        backoff = _BACKOFF_START
        while not self.stopping.is_set() and slot not in self._leaving:
            try:
                child = await self._spawn(slot)
            except OSError as exc:  # out of file descriptors or memory: try again
                event(log, logging.ERROR, "supervisor.start_failed", slot=slot, error=exc)
                await self._pause(slot, backoff)
                backoff = min(_BACKOFF_MAX, backoff * 2)
                continue
            self.children[slot] = child
            child, code = await self._wait_exit(child)
            was_ready = await child.pipe.got_ready(_READY_WAIT)
            await self._exited(child)
            if self.stopping.is_set():
                return
            if slot in self._leaving:
                self._forget(slot)
                event(log, logging.INFO, "supervisor.child_retired", slot=slot, pid=child.proc.pid)
                return
            if code == EXIT_SHUT_DOWN and self._retire(slot, child.proc.pid):
                return
            if code == EXIT_STARTUP_FAILED and not self.ever_ready:
                self._give_up(slot, child.proc.pid)
                return
            self.restarts += 1
            uptime = time.monotonic() - child.started
            event(
                log,
                logging.INFO if code == 0 else logging.ERROR,
                "supervisor.child_exited",
                slot=slot,
                pid=child.proc.pid,
                code=code,
                uptime=uptime,
                consumed=was_ready,
            )
            if code == 0 or was_ready:
                backoff = _BACKOFF_START
                # At once, but not in a hot loop if it dies as soon as it consumes.
                await self._pause(slot, _MIN_LIFE - uptime)
                continue
            # It never got going: wait before trying again, growing each time.
            await self._pause(slot, backoff)
            backoff = min(_BACKOFF_MAX, backoff * 2)
        if slot in self._leaving:
            self._forget(slot)

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

    def _forget(self, slot: Slot) -> None:
        self._leaving.discard(slot)
        self.slots.pop(slot, None)
        self.children.pop(slot, None)
        self._wake.pop(slot, None)
        self._keepers.pop(slot, None)

    def _retire(self, slot: Slot, pid: int) -> bool:
        """Leave ``slot`` empty, its worker told to shut down; whether it stays
        empty. The last worker to go takes the supervisor (and the isolation
        worker) with it; the isolation worker alone is started again, since the
        workers left still need it."""
        event(log, logging.INFO, "supervisor.child_shut_down", slot=slot, pid=pid)
        if slot == ISOLATION_SLOT and not self.shut_down:
            return False
        self.retired.add(slot)
        if all(s in self.retired for s in self.slots if s != ISOLATION_SLOT):
            self.shut_down = True
            self.stop()
        return True

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

    async def _pause(self, slot: Slot, seconds: float) -> None:
        """Wait ``seconds``, or less if the supervisor stops or the slot is nudged."""
        if seconds <= 0:
            return
        wake = self._wake[slot] = asyncio.Event()
        if self.stopping.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), seconds)

    async def _spawn(self, slot: Slot) -> Child:
        """Start a child for ``slot`` (not yet put in it)."""
        child = await children.spawn(slot, self.slots[slot], self._on_ready)
        if self.stopping.is_set():  # started while shutdown began: stop it too
            children.terminate(child)
        return child

    def _stop_child(self, child: Child) -> None:
        """Stop ``child`` gracefully, in the background."""
        task = asyncio.create_task(children.stop([child], self.shutdown_timeout))
        self._stopping_children.add(task)
        task.add_done_callback(self._stopping_children.discard)

    async def _stop_children(self) -> None:
        await children.stop(self._all_children(), self.shutdown_timeout)
        for child in list(self._starting):
            await self._exited(child)

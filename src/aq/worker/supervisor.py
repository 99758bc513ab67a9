"""``aq worker``'s supervisor: one process keeping its worker processes alive.

The supervisor starts each worker as a child process running ``aq worker``
(``--supervised``), plus, for network brokers, one isolation worker
(``--isolation``) that runs the tasks whose workers died while they ran, one
at a time (see :mod:`aq.worker.crashes`). It restarts any child that exits,
and on SIGTERM or SIGINT asks every child to stop gracefully, killing those
still alive after their grace period. Each child reads a pipe from the
supervisor, so if the supervisor dies the children stop rather than linger.

**Restarts.** Each child reports, on a pipe of its own, once it consumes. A
child that dies after that is restarted at once (or one second after it started,
if it lived less): a task that kills its process must not stall the queue, and
the crash policy keeps such a task from killing the next process for long. A
child that dies before it ever consumed (a broker that refuses it, an app that
no longer imports), or that cannot be started at all, is tried again after a
delay that starts at 0.5 s and doubles up to 30 s, so it does not spin; a clean
exit (``--max-tasks-per-child``) restarts at once too. A child that exits with
:data:`EXIT_SHUT_DOWN` was told to stop (``aq control shutdown``): it is not
replaced (but for the isolation worker while others run), and once every
worker has been told, the supervisor stops too, and ``aq worker`` exits with
that status, so that a process manager does not start it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from aq.logs import event

if TYPE_CHECKING:
    from aq.monitor.fleet import FleetMetrics

__all__ = ["EXIT_SHUT_DOWN", "EXIT_STARTUP_FAILED", "READY_FD", "Supervisor", "report_ready"]

log = logging.getLogger("aq.supervisor")

#: The exit code of a worker stopped by ``aq control shutdown``.
EXIT_SHUT_DOWN = 3
#: The exit code of a worker whose start-up hooks (``@broker.on_startup``) failed.
EXIT_STARTUP_FAILED = 4
#: The environment variable naming the pipe a child writes to once it consumes.
READY_FD = "AQ_READY_FD"

_BACKOFF_START = 0.5
_BACKOFF_MAX = 30.0
_MIN_LIFE = 1.0  # a child that consumed is restarted at once, but not oftener than this
_READY_WAIT = 1.0  # after a child exits, how long its report of readiness may take
ISOLATION_SLOT = "isolation"


def report_ready() -> None:
    """Tell the supervisor, if any, that this worker consumes (called by the child)."""
    fd = os.environ.pop(READY_FD, None)
    if fd is None:
        return
    with contextlib.suppress(OSError, ValueError):
        os.write(int(fd), b"r")
        os.close(int(fd))


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
    """

    def __init__(
        self,
        child_args: Sequence[str],
        processes: int,
        shutdown_timeout: float,
        isolation_args: Sequence[str] | None = None,
        metrics: Callable[[Supervisor], FleetMetrics] | None = None,
    ) -> None:
        self.slots: dict[int | str, list[str]] = {
            slot: list(child_args) for slot in range(processes)
        }
        if isolation_args is not None:
            self.slots[ISOLATION_SLOT] = list(isolation_args)
        self.processes = processes
        self.shutdown_timeout = shutdown_timeout
        self.children: dict[int | str, asyncio.subprocess.Process] = {}
        #: When each slot's current child started (time.monotonic()).
        self.started: dict[int | str, float] = {}
        #: Built before any child starts (it sets their metrics directory).
        self.metrics = metrics(self) if metrics is not None else None
        self.restarts = 0
        #: Slots whose workers were told to shut down, and are not replaced.
        self.retired: set[int | str] = set()
        #: Whether every worker was told to shut down (the command exits with 3).
        self.shut_down = False
        self._stopping = asyncio.Event()

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
        keepers = [asyncio.create_task(self._keep_alive(slot)) for slot in self.slots]
        try:
            await self._stopping.wait()
            await self._stop_children()
            await asyncio.gather(*keepers, return_exceptions=True)
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
            for task in keepers:
                task.cancel()
            if self.metrics is not None:
                await self.metrics.close()
        event(log, logging.INFO, "supervisor.stopped", restarts=self.restarts)

    def stop(self) -> None:
        """Ask the supervisor to stop (as SIGTERM does)."""
        self._stopping.set()

    def on_signal(self) -> None:
        """SIGTERM or SIGINT: stop; a second one hurries the children along."""
        if not self._stopping.is_set():
            self._stopping.set()
            return
        # A second signal: pass it on, and each child cuts its grace period short.
        event(log, logging.WARNING, "supervisor.hurry")
        self._signal_children()

    def live_children(self) -> list[tuple[int, float]]:
        """(pid, start time) of each child still running."""
        return [
            (proc.pid, self.started[slot])
            for slot, proc in self.children.items()
            if proc.returncode is None
        ]

    def _signal_children(self) -> None:
        for proc in self.children.values():
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)

    async def _keep_alive(self, slot: int | str) -> None:
        backoff = _BACKOFF_START
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                proc, ready = await self._start(slot)
            except OSError as exc:  # out of file descriptors or memory: try again
                event(log, logging.ERROR, "supervisor.start_failed", slot=slot, error=exc)
                await self._pause(backoff)
                backoff = min(_BACKOFF_MAX, backoff * 2)
                continue
            code = await proc.wait()
            if self.metrics is not None:
                self.metrics.child_exited(proc.pid)
            was_ready = await _answer(ready)
            if self._stopping.is_set():
                return
            if code == EXIT_SHUT_DOWN and self._retire(slot, proc.pid):
                return
            self.restarts += 1
            uptime = time.monotonic() - started
            event(
                log,
                logging.INFO if code == 0 else logging.ERROR,
                "supervisor.child_exited",
                slot=slot,
                pid=proc.pid,
                code=code,
                uptime=uptime,
                consumed=was_ready,
            )
            if code == 0 or was_ready:
                backoff = _BACKOFF_START
                # At once, but not in a hot loop if it dies as soon as it consumes.
                await self._pause(_MIN_LIFE - uptime)
                continue
            # It never got going: wait before trying again, growing each time.
            await self._pause(backoff)
            backoff = min(_BACKOFF_MAX, backoff * 2)

    def _retire(self, slot: int | str, pid: int) -> bool:
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

    async def _pause(self, seconds: float) -> None:
        """Wait ``seconds``, or less if the supervisor is asked to stop."""
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _start(
        self, slot: int | str
    ) -> tuple[asyncio.subprocess.Process, asyncio.Task[bool]]:
        """Start the child of ``slot``; also return a task that says whether it got ready."""
        read_end, write_end = os.pipe()
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "aq",
                *self.slots[slot],
                stdin=asyncio.subprocess.PIPE,
                start_new_session=True,
                pass_fds=(write_end,),
                env={**os.environ, READY_FD: str(write_end)},
            )
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        ready = asyncio.create_task(_read_ready(read_end))
        self.children[slot] = proc
        self.started[slot] = time.monotonic()
        event(log, logging.INFO, "supervisor.child_started", slot=slot, pid=proc.pid)
        if self._stopping.is_set():  # started while shutdown began: stop it too
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        return proc, ready

    async def _stop_children(self) -> None:
        alive = [p for p in self.children.values() if p.returncode is None]
        self._signal_children()
        if not alive:
            return
        waits = [asyncio.create_task(p.wait()) for p in alive]
        _, pending = await asyncio.wait(waits, timeout=self.shutdown_timeout + 5)
        for proc in alive:
            if proc.returncode is None:
                event(log, logging.WARNING, "supervisor.child_killed", pid=proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


async def _answer(ready: asyncio.Task[bool]) -> bool:
    """Whether an exited child reported ready. Its pipe's write end may live on in
    a process it forked, so the answer is not awaited for ever."""
    try:
        async with asyncio.timeout(_READY_WAIT):
            return await asyncio.shield(ready)
    except TimeoutError:
        ready.cancel()
        return False


async def _read_ready(fd: int) -> bool:
    """Whether the child at the other end of pipe ``fd`` reported ready before it closed."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    pipe = os.fdopen(fd, "rb", buffering=0)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    try:
        return bool(await reader.read(1))
    finally:
        transport.close()

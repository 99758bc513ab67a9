"""``aq worker --processes N``: one supervising process over N worker processes.

The supervisor starts each worker as a child process running ``aq worker``
with ``--processes 1``, restarts any child that exits (at once after a clean
exit such as ``--max-tasks-per-child``, with growing backoff after a crash),
and on SIGTERM or SIGINT asks every child to stop gracefully, killing those
still alive after their grace period. Each child reads a pipe from the
supervisor, so if the supervisor dies the children stop rather than linger.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Sequence

from aq.logs import event

__all__ = ["Supervisor"]

log = logging.getLogger("aq.supervisor")

_BACKOFF_START = 0.5
_BACKOFF_MAX = 30.0
_HEALTHY_AFTER = 60.0


class Supervisor:
    """Keeps ``processes`` worker processes alive; see the module docstring.

    Args:
        child_args: the arguments after ``python -m aq`` that start one worker.
        processes: how many workers to keep running.
        shutdown_timeout: a child's grace period; it is killed 5 s after that.
    """

    def __init__(self, child_args: Sequence[str], processes: int, shutdown_timeout: float) -> None:
        self.child_args = list(child_args)
        self.processes = processes
        self.shutdown_timeout = shutdown_timeout
        self.children: dict[int, asyncio.subprocess.Process] = {}
        self.restarts = 0
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        """Supervise until SIGTERM or SIGINT, then stop every child."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal)
        event(log, logging.INFO, "supervisor.started", processes=self.processes)
        slots = [asyncio.create_task(self._keep_alive(slot)) for slot in range(self.processes)]
        try:
            await self._stopping.wait()
            await self._stop_children()
            await asyncio.gather(*slots, return_exceptions=True)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            for task in slots:
                task.cancel()
        event(log, logging.INFO, "supervisor.stopped", restarts=self.restarts)

    def stop(self) -> None:
        """Ask the supervisor to stop (as SIGTERM does)."""
        self._stopping.set()

    def _on_signal(self) -> None:
        if not self._stopping.is_set():
            self._stopping.set()
            return
        # A second signal: pass it on, and each child cuts its grace period short.
        event(log, logging.WARNING, "supervisor.hurry")
        self._signal_children()

    def _signal_children(self) -> None:
        for proc in self.children.values():
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)

    async def _keep_alive(self, slot: int) -> None:
        backoff = _BACKOFF_START
        while not self._stopping.is_set():
            started = time.monotonic()
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "aq",
                *self.child_args,
                stdin=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
            self.children[slot] = proc
            event(log, logging.INFO, "supervisor.child_started", slot=slot, pid=proc.pid)
            if self._stopping.is_set():  # started while shutdown began: stop it too
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
            code = await proc.wait()
            if self._stopping.is_set():
                return
            self.restarts += 1
            uptime = time.monotonic() - started
            level = logging.INFO if code == 0 else logging.ERROR
            event(
                log,
                level,
                "supervisor.child_exited",
                slot=slot,
                pid=proc.pid,
                code=code,
                uptime=uptime,
            )
            if code == 0 or uptime > _HEALTHY_AFTER:
                backoff = _BACKOFF_START
                continue
            # A crashing child is restarted with growing delays, not in a hot loop.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), backoff)
            backoff = min(_BACKOFF_MAX, backoff * 2)

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

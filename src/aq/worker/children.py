"""One child process of the supervisor: how it is started, and how it is stopped.

A child runs ``python -m aq`` with the supervisor's arguments for its slot,
in a session of its own (a Ctrl-C in the terminal reaches the supervisor
alone, which stops the children in order), with standard input a pipe from
the supervisor (its end-of-file stops an orphan) and a pipe back for its
readiness and load (:mod:`aq.worker.pulse`). It is stopped with SIGTERM,
which lets its running tasks finish within its grace period, and killed if
it is still alive some seconds after that; :class:`Draining` does so in the
background.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass

from aq.logs import event
from aq.worker.pulse import READY_FD, ChildPipe

__all__ = ["KILL_AFTER", "Child", "Draining", "Slot", "spawn", "stop", "terminate"]

log = logging.getLogger("aq.supervisor")

#: Seconds past its grace period after which a stopping child is killed.
KILL_AFTER = 5.0

#: A worker slot's number, or ``"isolation"``.
Slot = int | str


@dataclass(eq=False)
class Child:
    """One child process of the supervisor."""

    slot: Slot
    proc: asyncio.subprocess.Process
    #: When it started (time.monotonic()).
    started: float
    #: Its pipe: whether it is ready, and its load.
    pipe: ChildPipe

    @property
    def running(self) -> bool:
        """Whether it has not exited yet (as far as asyncio has seen)."""
        return self.proc.returncode is None


async def spawn(slot: Slot, args: Sequence[str], on_ready: Callable[[], None]) -> Child:
    """Start a child running ``python -m aq *args`` for ``slot``.

    Raises:
        OSError: it could not be started (out of file descriptors or memory).
    """
    read_end, write_end = os.pipe()
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "aq",
            *args,
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
    child = Child(slot, proc, time.monotonic(), ChildPipe(read_end, on_ready))
    event(log, logging.INFO, "supervisor.child_started", slot=slot, pid=proc.pid)
    return child


def terminate(child: Child) -> None:
    """Send ``child`` SIGTERM (a graceful stop) if it still runs."""
    if child.running:
        with contextlib.suppress(ProcessLookupError):
            child.proc.send_signal(signal.SIGTERM)


async def stop(children: Sequence[Child], grace: float) -> None:
    """Stop ``children`` gracefully, killing those alive ``grace`` + KILL_AFTER
    seconds later; return once all have exited."""
    alive = [c.proc for c in children if c.running]
    for child in children:
        terminate(child)
    if not alive:
        return
    waits = [asyncio.create_task(p.wait()) for p in alive]
    _, pending = await asyncio.wait(waits, timeout=grace + KILL_AFTER)
    for proc in alive:
        if proc.returncode is None:
            event(log, logging.WARNING, "supervisor.child_killed", pid=proc.pid)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)


class Draining:
    """Children stopping gracefully in the background (as :func:`stop` does).

    Args:
        grace: their grace period.
    """

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self._tasks: dict[Child, asyncio.Task[None]] = {}

    def __contains__(self, child: object) -> bool:
        return child in self._tasks

    def __iter__(self) -> Iterator[Child]:
        return iter(list(self._tasks))

    def add(self, child: Child, then: Callable[[Child], Awaitable[None]] | None = None) -> None:
        """Stop ``child`` (unless it already stops here), then await ``then(child)``."""
        if child not in self._tasks:
            self._tasks[child] = asyncio.create_task(self._stop(child, then))

    async def wait(self) -> None:
        """Return once every child stopping now has exited."""
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    def cancel(self) -> None:
        """Stop waiting for them (they stop all the same)."""
        for task in self._tasks.values():
            task.cancel()

    async def _stop(self, child: Child, then: Callable[[Child], Awaitable[None]] | None) -> None:
        try:
            await stop([child], self.grace)
            if then is not None:
                await then(child)
        finally:
            self._tasks.pop(child, None)

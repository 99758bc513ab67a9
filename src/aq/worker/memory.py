"""``--max-memory-per-child``: a worker process that replaces itself when it grows too large.

A task that leaks (a module-level cache that only grows, a C extension that
never frees) makes its process larger with every run. With a limit, the
worker reads its resident set size about once a second and after each task
finishes (a read of about two microseconds); once the RSS passes the limit,
it logs ``worker.memory_limit``, stops taking deliveries, lets its running
tasks finish within its grace period, and exits 0, so that its supervisor
starts a fresh process at once (as after ``--max-tasks-per-child``). Nothing
is lost: a task still running when the grace period ends is cancelled and
its message returned to the queue. A worker that has not started a task yet
never replaces itself: a limit below a worker's own footprint would
otherwise restart it for ever.

The RSS is read from ``/proc/self/statm`` (Linux), kept open; elsewhere it falls
back to ``resource.getrusage``, which gives the peak RSS rather than the current one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import sys
from collections.abc import Callable

from aq.logs import event

__all__ = ["MemoryLimit", "resident_bytes"]

log = logging.getLogger("aq.worker")

_INTERVAL = 1.0  # seconds between the background readings
_MB = 1024 * 1024
_STATM = "/proc/self/statm"


def resident_bytes(statm: int | None = None) -> int:
    """This process's resident set size in bytes, read from ``statm`` (a file
    descriptor of /proc/self/statm) or opened here; the peak where /proc is missing."""
    try:
        if statm is None:
            with open(_STATM, "rb") as file:
                text = file.read()
        else:
            text = os.pread(statm, 128, 0)
        return int(text.split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # bytes there, KiB here


class MemoryLimit:
    """Calls ``exceeded`` once when this process's RSS passes ``limit_mb`` megabytes.

    Args:
        limit_mb: the limit in MiB (``--max-memory-per-child``).
        exceeded: called once, when a reading passes the limit.
        armed: whether the limit applies yet (the worker has started a task).
    """

    def __init__(
        self, limit_mb: int, exceeded: Callable[[], None], armed: Callable[[], bool]
    ) -> None:
        self.limit = limit_mb * _MB
        self._exceeded = exceeded
        self._armed = armed
        self._tripped = False
        try:
            self._statm: int | None = os.open(_STATM, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self._statm = None

    def check(self) -> None:
        """Read the RSS; past the limit, log it and call ``exceeded`` (once)."""
        if self._tripped or not self._armed():
            return
        rss = resident_bytes(self._statm)
        if rss > self.limit:
            self._tripped = True
            event(
                log,
                logging.WARNING,
                "worker.memory_limit",
                rss=f"{rss / _MB:.1f}MB",
                limit=f"{self.limit // _MB}MB",
                note="finishing the tasks running, then this process is replaced",
            )
            self._exceeded()

    async def watch(self) -> None:
        """Check about once a second, until cancelled (then close the file)."""
        try:
            while not self._tripped:
                self.check()
                await asyncio.sleep(_INTERVAL)
        finally:
            self.close()

    def close(self) -> None:
        statm, self._statm = self._statm, None
        if statm is not None:
            os.close(statm)


_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

"""The pipe from a supervised worker process to its supervisor: "ready", then its load.

The supervisor gives each child the write end of a pipe of its own, named by
the environment variable ``AQ_READY_FD``. The child writes the line ``ready``
once it consumes, then about once a second a line ``load LAG IN_FLIGHT
CONCURRENCY``: LAG is the longest its event loop was late to wake a 0.1 s
timer since the last line (a task that blocks the loop, such as CPU-bound
code, shows here), IN_FLIGHT the tasks it runs now, CONCURRENCY its slots.
The supervisor reads the pipe (:class:`ChildPipe`) to restart children by
whether they ever got ready, to replace a child on ``--reload`` once its
successor is ready, and to autoscale by load (:mod:`aq.worker.autoscale`).

The child's end is non-blocking, and lines are shorter than ``PIPE_BUF`` so
each write is whole or not at all: a supervisor that stops reading never
stalls a worker, it only misses reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["READY_FD", "ChildPipe", "Load", "Pulse"]

#: The environment variable naming the pipe a child writes to.
READY_FD = "AQ_READY_FD"

_SAMPLE = 0.1  # seconds between the child's lag probes
_REPORT = 1.0  # seconds between its load lines


@dataclass(frozen=True, slots=True)
class Load:
    """A child's report of its load."""

    #: The longest its event loop was late (seconds) since its last report.
    lag: float
    #: Tasks it runs now.
    in_flight: int
    #: Its slots (``--concurrency``).
    concurrency: int


class _Loaded(Protocol):
    """What a :class:`Pulse` reports on: an :class:`aq.Worker`."""

    @property
    def in_flight(self) -> int: ...

    @property
    def concurrency(self) -> int: ...


class Pulse:
    """The child's end of the pipe (see the module docstring)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_blocking(fd, False)
        os.set_inheritable(fd, False)  # a process a task starts must not hold it open

    @classmethod
    def from_environment(cls) -> Pulse | None:
        """The pipe the supervisor gave this process, or None without a supervisor."""
        fd = os.environ.pop(READY_FD, None)
        if fd is None:
            return None
        try:
            return cls(int(fd))
        except (OSError, ValueError):
            return None

    def ready(self) -> None:
        """Tell the supervisor that this worker consumes."""
        self._write("ready")

    async def beat(self, worker: _Loaded) -> None:
        """Report ``worker``'s load about once a second, until cancelled."""
        loop = asyncio.get_running_loop()
        worst = 0.0
        reported = loop.time()
        while True:
            before = loop.time()
            await asyncio.sleep(_SAMPLE)
            now = loop.time()
            worst = max(worst, now - before - _SAMPLE)
            if now - reported >= _REPORT:
                self._write(f"load {worst:.3f} {worker.in_flight} {worker.concurrency}")
                worst, reported = 0.0, now

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)

    def _write(self, line: str) -> None:
        # A full pipe (BlockingIOError) or a gone supervisor: the report is dropped.
        with contextlib.suppress(OSError):
            os.write(self.fd, line.encode() + b"\n")


class ChildPipe:
    """The supervisor's end of one child's pipe.

    Args:
        fd: the read end.
        on_ready: called once the child reports ready.
    """

    def __init__(self, fd: int, on_ready: Callable[[], None]) -> None:
        self._on_ready = on_ready
        #: Set once the child reported ready.
        self.ready = asyncio.Event()
        #: Its latest load report, and when it came (time.monotonic()).
        self.load: Load | None = None
        self.load_at = 0.0
        self._reading = asyncio.create_task(self._read(fd))

    async def wait_ready(self, exited: asyncio.Future[int]) -> bool:
        """Wait until the child reports ready (True) or ``exited`` is done first (False)."""
        ready: asyncio.Future[Any] = asyncio.create_task(self.ready.wait())
        try:
            await asyncio.wait([ready, exited], return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        if not self.ready.is_set():  # the report may still be in the pipe
            await self.got_ready(_READY_WAIT)
        return self.ready.is_set()

    async def got_ready(self, wait: float) -> bool:
        """Whether an exited child had reported ready. Its pipe's write end may
        live on in a process it forked, so the end of the pipe is awaited for at
        most ``wait`` seconds."""
        if not self.ready.is_set():
            await asyncio.wait([self._reading], timeout=wait)
        return self.ready.is_set()

    async def close(self) -> None:
        """Stop reading and close the pipe."""
        self._reading.cancel()
        await asyncio.gather(self._reading, return_exceptions=True)

    async def _read(self, fd: int) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        pipe = os.fdopen(fd, "rb", buffering=0)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), pipe
        )
        try:
            async for line in reader:
                self._take(line.split())
        finally:
            transport.close()

    def _take(self, words: list[bytes]) -> None:
        if words == [b"ready"]:
            if not self.ready.is_set():
                self.ready.set()
                self._on_ready()
        elif len(words) == 4 and words[0] == b"load":
            with contextlib.suppress(ValueError):
                self.load = Load(float(words[1]), int(words[2]), int(words[3]))
                self.load_at = time.monotonic()


_READY_WAIT = 1.0  # see ChildPipe.got_ready

"""The metrics port of a supervisor: every worker process's metrics as one.

Worker processes started by ``aq worker --processes N --metrics-port P``
write their metrics to files in ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-
client's multiprocess mode); this process sets that directory (a fresh one,
unless the environment names one, which is then emptied) before any child
starts. A scrape of the supervisor adds the files up, and reads the queue
depths from the broker (connecting when first asked, and again after a
failure). ``/healthz`` is 200 only while every live worker process has found
its loop turning and its broker answering within ``HEALTH_STALE`` seconds. A
process that started less than ``_GRACE`` seconds ago and has not reported
yet is not judged (a child replaced after a crash does not fail the probe),
unless none has reported: then it is 503, "starting". A child that exits
has its live gauges removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Sequence

from aq.broker import Broker
from aq.monitor.http import Health, MetricsServer
from aq.worker.reporting import HEALTH_STALE

#: Seconds a new worker process has to report itself healthy before it is judged.
_GRACE = 10.0

__all__ = ["FleetMetrics", "prepare_directory"]

_ALIVE = "aq_worker_alive_timestamp_seconds"

#: (pid, time.monotonic() when it started) of each live worker process.
Children = Callable[[], Sequence[tuple[int, float]]]


def prepare_directory() -> tuple[str, bool]:
    """Set ``PROMETHEUS_MULTIPROC_DIR`` for the children: (the directory, whether
    it was made here and is to be removed at the end)."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        os.makedirs(given, exist_ok=True)
        for stale in glob.glob(os.path.join(given, "*.db")):  # from an earlier run
            with contextlib.suppress(OSError):
                os.remove(stale)
        return given, False
    made = tempfile.mkdtemp(prefix="aq-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = made
    return made, True


class FleetMetrics:
    """Serves the added-up metrics and health of a supervisor's workers.

    Args:
        sock: the bound metrics socket.
        broker: for the queue depths (connected on :meth:`start`).
        queues: the queues whose depth is reported.
        children: the live worker processes, for ``/healthz``.
    """

    def __init__(
        self, sock: socket.socket, broker: Broker, queues: Sequence[str], children: Children
    ) -> None:
        from prometheus_client import CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector

        from aq.monitor.metrics import QueueDepth, scrape

        self.directory, self._owned = prepare_directory()
        self.broker = broker
        self.children = children
        self.registry = CollectorRegistry()
        self._files = MultiProcessCollector(self.registry, path=self.directory)  # type: ignore[no-untyped-call]
        depth = QueueDepth()
        self.registry.register(depth)

        async def metrics() -> bytes:
            with contextlib.suppress(Exception):  # depths are left out until it connects
                async with asyncio.timeout(2.0):
                    await broker.connect()  # at once when it is connected
            return await scrape(self.registry, depth, broker.admin, list(queues))

        self.server = MetricsServer(sock, metrics, self.health)

    async def start(self) -> None:
        await self.server.start()

    async def close(self) -> None:
        await self.server.close()
        with contextlib.suppress(Exception):
            await self.broker.shutdown()
        if self._owned:
            shutil.rmtree(self.directory, ignore_errors=True)

    def child_exited(self, pid: int) -> None:
        """Forget the live gauges of a worker process that exited."""
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, self.directory)  # type: ignore[no-untyped-call]

    async def health(self) -> Health:
        children = self.children()
        if not children:
            return False, "no worker process is running"
        alive: dict[str, float] = {}
        for family in self._files.collect():  # type: ignore[no-untyped-call]
            if family.name == _ALIVE:
                alive = {s.labels.get("pid", ""): s.value for s in family.samples}
        now, clock = time.time(), time.monotonic()
        judged = 0
        for pid, started in children:
            seen = alive.get(str(pid))
            if seen is None and clock - started < _GRACE:
                continue  # just started: not judged yet
            judged += 1
            if seen is None or now - seen > HEALTH_STALE:
                return False, f"worker process {pid} has not reached its broker recently"
        return (True, "ok") if judged else (False, "starting: no worker process has reported yet")

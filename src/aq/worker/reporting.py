"""What a worker tells about itself: its id, its events, its states, its stats.

A :class:`Reporter` gives the worker its id (``host.pid``), builds the
:class:`~aq.monitor.watch.TaskWatch` its executor calls (events with
``--events``, task states when the broker keeps results, Prometheus metrics
with ``--metrics-port``), announces the worker (``worker-online``, a
``worker-heartbeat`` every :data:`HEARTBEAT_INTERVAL` seconds,
``worker-offline``), checks its health (a broker ping every second, with
metrics on), and describes it for ``aq inspect`` (:meth:`stats`,
:meth:`registered`).
"""

from __future__ import annotations

import asyncio
import os
import resource
import socket
import time
from typing import TYPE_CHECKING, Any

from aq.errors import AQError
from aq.monitor.emitter import EventEmitter, worker_id
from aq.monitor.status import StatusWriter
from aq.monitor.watch import EventSink, StatusSink, TaskWatch, combine
from aq.version import __version__

if TYPE_CHECKING:
    from aq.monitor.metrics import WorkerMetrics
    from aq.worker.worker import Worker

__all__ = ["HEALTH_INTERVAL", "HEALTH_STALE", "HEARTBEAT_INTERVAL", "Reporter"]

#: Seconds between a worker's health checks (a broker ping) with metrics on.
HEALTH_INTERVAL = 1.0
#: Seconds without a successful health check after which /healthz says 503.
HEALTH_STALE = 5.0
#: Seconds between a worker's heartbeat events (a watcher counts a worker gone
#: after three missed ones).
HEARTBEAT_INTERVAL = 2.0


class Reporter:
    """The monitoring side of one worker; see the module docstring."""

    def __init__(self, worker: Worker, extra: list[TaskWatch] | None = None) -> None:
        self.worker = worker
        self.id = worker_id()
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.started_at = time.time()
        broker = worker.broker
        watches: list[TaskWatch] = list(extra or ())
        self.emitter: EventEmitter | None = None
        if worker.options.events:
            self.emitter = broker.enable_events()
            with_data = frozenset(t.name for t in broker.tasks.values() if t.config.event_data)
            watches.append(EventSink(self.emitter, self.id, self.host, with_data))
        self.status: StatusWriter | None = None
        if broker.tracks_states:
            assert broker.result_ttl is not None
            store = broker.require_store("result_ttl")
            self.status = StatusWriter(store, broker.codec, broker.result_ttl)
            timeouts = [t.config.timeout for t in broker.tasks.values()]
            longest = max((t for t in timeouts if t is not None), default=0.0)
            if None in timeouts:
                longest = max(longest, 86400.0)
            watches.append(StatusSink(self.status, self.id, longest))
        self.metrics: WorkerMetrics | None = None
        if worker.options.metrics_port is not None:
            from aq.monitor.metrics import WorkerMetrics  # prometheus-client only when asked

            self.metrics = WorkerMetrics()
            watches.append(self.metrics)
        #: When the event loop last turned with the broker reachable (monotonic).
        self.alive_at: float | None = None
        self._health_error = "not checked yet"
        #: What the executor calls at each step of a task; None when nothing watches.
        self.watch = combine(watches)

    def _emit(self, kind: str, **fields: Any) -> None:
        if self.emitter is not None:
            fields["worker"] = self.id
            fields["host"] = self.host
            self.emitter.emit(kind, fields)

    def online(self) -> None:
        """Announce the worker (``worker-online``)."""
        worker = self.worker
        self._emit(
            "worker-online",
            pid=self.pid,
            queues=list(worker.queues),
            concurrency=worker.concurrency,
            freq=HEARTBEAT_INTERVAL,
            started_at=self.started_at,
            version=__version__,
        )

    async def heartbeats(self) -> None:
        """Emit ``worker-heartbeat`` every :data:`HEARTBEAT_INTERVAL` seconds."""
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL)
            worker = self.worker
            self._emit(
                "worker-heartbeat",
                pid=self.pid,
                active=worker.in_flight,
                processed=worker.finished_count,
                concurrency=worker.concurrency,
                freq=HEARTBEAT_INTERVAL,
                loadavg=list(os.getloadavg()),
            )

    async def check_health(self) -> None:
        """Once a second: ping the broker, and set the gauges (with metrics on)."""
        transport = self.worker.broker.transport
        while True:
            try:
                async with asyncio.timeout(HEALTH_INTERVAL * 2):
                    await transport.ping()
            except (AQError, TimeoutError) as exc:
                self._health_error = f"the broker does not answer: {exc or 'timed out'}"
                healthy = False
            else:
                self.alive_at = time.monotonic()
                healthy = True
            if self.metrics is not None:
                worker = self.worker
                executor = worker.executor
                self.metrics.sample(
                    worker.in_flight, len(executor.active), worker.concurrency, healthy
                )
            await asyncio.sleep(HEALTH_INTERVAL)

    async def health(self) -> tuple[bool, str]:
        """Whether the worker's loop turns and its broker answered within
        :data:`HEALTH_STALE` seconds (what ``/healthz`` of a lone worker says)."""
        alive_at = self.alive_at
        if alive_at is None or time.monotonic() - alive_at > HEALTH_STALE:
            return False, self._health_error
        return True, "ok"

    async def offline(self) -> None:
        """Say goodbye (``worker-offline``) and send what is still buffered."""
        self._emit("worker-offline", pid=self.pid, processed=self.worker.finished_count)
        if self.emitter is not None:
            await self.emitter.flush()
        if self.status is not None:
            await self.status.flush()

    def stats(self) -> dict[str, Any]:
        """This worker's figures, for ``aq inspect stats``."""
        worker = self.worker
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "worker": self.id,
            "host": self.host,
            "pid": self.pid,
            "started_at": self.started_at,
            "version": __version__,
            "uptime": time.time() - self.started_at,
            "queues": list(worker.queues),
            "concurrency": worker.concurrency,
            "in_flight": worker.in_flight,
            "started": worker.started_count,
            "processed": worker.finished_count,
            "interrupted": worker.interrupted_count,
            "events": self.emitter is not None,
            "max_rss_kib": usage.ru_maxrss,
            "cpu_user": usage.ru_utime,
            "cpu_system": usage.ru_stime,
        }

    def registered(self) -> list[dict[str, Any]]:
        """The tasks this worker runs, with their limits, for ``aq inspect registered``."""
        queues = set(self.worker.queues)
        options = self.worker.options
        found = []
        for task in self.worker.broker.tasks.values():
            config = task.config
            if config.queue not in queues:
                continue
            rate = self.worker.limits.rate(task)
            # What applies here: the task's own settings, else this worker's defaults.
            retries = config.retries if config.retries_given else options.default_retries or 0
            found.append(
                {
                    "name": task.name,
                    "queue": config.queue,
                    "kind": task.kind,
                    "timeout": config.timeout or options.default_timeout,
                    "soft_timeout": config.soft_timeout,
                    "retries": retries,  # None: without limit
                    "rate_limit": str(rate) if rate else None,
                    "max_concurrency": config.max_concurrency,
                }
            )
        return found

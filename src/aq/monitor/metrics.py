"""Prometheus metrics of a worker, and what a scrape adds to them.

:class:`WorkerMetrics` is a :class:`~aq.monitor.watch.TaskWatch`: it counts
tasks by name, queue and outcome, times them in a histogram, and counts
retries and dead letters; :meth:`WorkerMetrics.sample` sets the gauges (tasks
in flight, running and waiting, concurrency slots, the last time the event
loop turned with the broker reachable) once a second. With several worker
processes, prometheus-client's multiprocess mode is used: each process
writes its values to files in ``PROMETHEUS_MULTIPROC_DIR`` (which the
supervisor creates and sets before it starts them), and the supervisor's
scrape adds them up (counters and histograms summed, gauges summed over live
processes, except the per-process health gauges). :class:`QueueDepth` is a
collector that reports the depth of each queue by state, read from the broker
at scrape time by the process that serves ``/metrics``.

Names follow Prometheus conventions: an ``aq_`` prefix, base units
(seconds), ``_total`` on counters.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from aq.errors import AQError
from aq.message import TaskMessage
from aq.monitor.watch import TaskWatch
from aq.transport.admin import Admin, QueueStats

__all__ = ["RUNTIME_BUCKETS", "QueueDepth", "WorkerMetrics", "multiprocess", "scrape"]

#: Runtime histogram buckets, in seconds: from a millisecond to ten minutes.
RUNTIME_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    600.0,
)
_TASK = ("task", "queue")


def multiprocess() -> bool:
    """Whether prometheus-client writes to files shared by several processes."""
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def dead_letter_reason(reason: str) -> str:
    """A dead letter's reason as a label with few values."""
    for prefix, label in (
        ("undecodable", "undecodable"),
        ("message of", "oversized"),
        ("unknown task", "unknown_task"),
        ("crashed ", "crashed"),
        ("delivered ", "crashed"),
        ("expired", "expired"),
    ):
        if reason.startswith(prefix):
            return label
    return "failed" if " attempt(s): " in reason else "other"


class WorkerMetrics(TaskWatch):
    """The metrics of the workers of one process, in ``registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.taken = Counter(
            "aq_tasks_received", "Task messages taken by workers.", _TASK, registry=reg
        )
        self.outcomes = Counter(
            "aq_tasks",
            "Task attempts ended, by outcome: succeeded, failed, retried, cancelled, "
            "expired, dead_lettered.",
            (*_TASK, "outcome"),
            registry=reg,
        )
        self.runtime = Histogram(
            "aq_task_runtime_seconds",
            "How long task attempts ran, whatever their outcome.",
            _TASK,
            buckets=RUNTIME_BUCKETS,
            registry=reg,
        )
        self.retries = Counter(
            "aq_task_retries", "Failed attempts sent back to run again.", _TASK, registry=reg
        )
        self.dead_letters = Counter(
            "aq_dead_letters",
            "Messages moved to a dead-letter queue, by reason: failed, expired, "
            "undecodable, oversized, unknown_task, crashed, other.",
            ("queue", "reason"),
            registry=reg,
        )
        self.in_flight = Gauge(
            "aq_tasks_in_flight",
            "Task messages a worker holds: running or waiting for their limits.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.running = Gauge(
            "aq_tasks_running",
            "Tasks whose function runs now.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.slots = Gauge(
            "aq_worker_concurrency_slots",
            "How many tasks the workers may hold at once (--concurrency, summed).",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.alive = Gauge(
            "aq_worker_alive_timestamp_seconds",
            "When each worker process last found its event loop turning and its broker "
            "reachable (UNIX time).",
            registry=reg,
            multiprocess_mode="liveall",
        )

    # -- hooks -------------------------------------------------------------------------

    def received(self, message: TaskMessage, queue: str) -> None:
        self.taken.labels(message.task, message.queue).inc()

    def succeeded(self, message: TaskMessage, runtime: float, value: Any) -> None:
        self._ended(message, "succeeded", runtime)

    def failed(self, message: TaskMessage, runtime: float, error: BaseException | None) -> None:
        self._ended(message, "failed", runtime)
        self.dead_letters.labels(message.queue, "failed").inc()

    def retried(
        self, message: TaskMessage, runtime: float, error: BaseException | None, eta: float
    ) -> None:
        self._ended(message, "retried", runtime)
        self.retries.labels(message.task, message.queue).inc()

    def cancelled(self, message: TaskMessage, runtime: float) -> None:
        self._ended(message, "cancelled", runtime)

    def expired(self, message: TaskMessage) -> None:
        self.outcomes.labels(message.task, message.queue, "expired").inc()
        self.dead_letters.labels(message.queue, "expired").inc()

    def dead_lettered(self, message: TaskMessage | None, queue: str, reason: str) -> None:
        if message is not None:
            self.outcomes.labels(message.task, message.queue, "dead_lettered").inc()
        self.dead_letters.labels(queue, dead_letter_reason(reason)).inc()

    def _ended(self, message: TaskMessage, outcome: str, runtime: float) -> None:
        self.outcomes.labels(message.task, message.queue, outcome).inc()
        self.runtime.labels(message.task, message.queue).observe(runtime)

    # -- gauges ------------------------------------------------------------------------

    def sample(self, in_flight: int, running: int, slots: int, healthy: bool) -> None:
        """Set the gauges (called once a second by the worker)."""
        self.in_flight.set(in_flight)
        self.running.set(running)
        self.slots.set(slots)
        if healthy:
            self.alive.set(time.time())


class QueueDepth(Collector):
    """``aq_queue_messages{queue, state}``: each queue's depth by state, as last read.

    The process serving ``/metrics`` refreshes :attr:`stats` before each scrape
    (reading the broker takes a round trip, which a collector cannot await).
    """

    def __init__(self) -> None:
        self.stats: Sequence[QueueStats] = ()

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "aq_queue_messages",
            "Messages in each queue, by state: ready, delayed, unacked, isolated, dead.",
            labels=("queue", "state"),
        )
        for entry in self.stats:
            for state in ("ready", "delayed", "unacked", "isolated", "dead"):
                family.add_metric((entry.queue, state), getattr(entry, state))
        yield family


#: Seconds a scrape may spend reading queue depths from the broker.
_DEPTH_TIMEOUT = 2.0


async def scrape(
    registry: CollectorRegistry, depth: QueueDepth, admin: Admin, queues: Sequence[str]
) -> bytes:
    """The exposition text of ``registry``, with the depth of ``queues`` read now
    (left out if the broker does not answer in time)."""
    try:
        async with asyncio.timeout(_DEPTH_TIMEOUT):
            depth.stats = [await admin.stats(q) for q in queues]
    except (AQError, TimeoutError):
        depth.stats = ()
    return generate_latest(registry)

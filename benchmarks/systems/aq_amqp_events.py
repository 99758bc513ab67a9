"""aq on RabbitMQ, with monitoring events on (benchmarks/systems/_aq_events.py)."""

from __future__ import annotations

from benchmarks.systems import _aq_events
from benchmarks.systems._aq_events import SETTINGS, TARGET, WORKLOADS, Client, broker

BROKER = "amqp"
LABEL = "aq + events"
__all__ = ["BROKER", "LABEL", "SETTINGS", "TARGET", "WORKLOADS", "Client", "broker", "worker_argv"]


def worker_argv(workload: str) -> list[str]:
    return _aq_events.worker_argv(__name__, workload)

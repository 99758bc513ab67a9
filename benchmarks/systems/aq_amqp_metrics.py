"""aq on RabbitMQ with Prometheus metrics on (benchmarks/systems/_aq_metrics.py)."""

from __future__ import annotations

from benchmarks.systems import _aq_metrics
from benchmarks.systems._aq_metrics import SETTINGS, TARGET, WORKLOADS, Client, broker

BROKER = "amqp"
LABEL = "aq + metrics"
__all__ = ["BROKER", "LABEL", "SETTINGS", "TARGET", "WORKLOADS", "Client", "broker", "worker_argv"]


def worker_argv(workload: str) -> list[str]:
    return _aq_metrics.worker_argv(__name__, workload)

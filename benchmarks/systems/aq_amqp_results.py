"""aq on RabbitMQ, keeping results without task states (benchmarks/systems/_aq_results.py)."""

from __future__ import annotations

from benchmarks.systems import _aq_results
from benchmarks.systems._aq_results import SETTINGS, TARGET, WORKLOADS, Client, broker

BROKER = "amqp"
LABEL = "aq + results"
__all__ = ["BROKER", "LABEL", "SETTINGS", "TARGET", "WORKLOADS", "Client", "broker", "worker_argv"]


def worker_argv(workload: str) -> list[str]:
    return _aq_results.worker_argv(__name__, workload)

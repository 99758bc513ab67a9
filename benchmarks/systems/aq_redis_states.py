"""aq on Redis, keeping results and task states (benchmarks/systems/_aq_states.py)."""

from __future__ import annotations

from benchmarks.systems import _aq_states
from benchmarks.systems._aq_states import SETTINGS, TARGET, WORKLOADS, Client, broker

BROKER = "redis"
LABEL = "aq + task states"
__all__ = ["BROKER", "LABEL", "SETTINGS", "TARGET", "WORKLOADS", "Client", "broker", "worker_argv"]


def worker_argv(workload: str) -> list[str]:
    return _aq_states.worker_argv(__name__, workload)

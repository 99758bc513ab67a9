"""aq on Redis with a global rate limit that never binds (benchmarks/systems/_aq_limited.py)."""

from __future__ import annotations

from benchmarks.systems import _aq_limited
from benchmarks.systems._aq_limited import SETTINGS, WORKLOADS, Client, broker

BROKER = "redis"
LABEL = "aq + global_rate_limit"
__all__ = ["BROKER", "LABEL", "SETTINGS", "WORKLOADS", "Client", "broker", "worker_argv"]


def worker_argv(workload: str) -> list[str]:
    return _aq_limited.worker_argv(__name__, workload)

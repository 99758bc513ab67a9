"""aq on Redis (the app is in benchmarks/systems/_aq.py)."""

from __future__ import annotations

from benchmarks.systems import _aq
from benchmarks.systems._aq import WORKLOADS, Client, broker

BROKER = "redis"
LABEL = "aq"
SETTINGS = _aq.SETTINGS
__all__ = ["BROKER", "LABEL", "SETTINGS", "WORKLOADS", "Client", "broker", "worker_argv"]


def worker_argv(workload: str) -> list[str]:
    return _aq.worker_argv(__name__, workload)

"""aq on Redis, with every message signed (benchmarks/systems/_aq_signed.py)."""

from __future__ import annotations

from benchmarks.systems import _aq_signed
from benchmarks.systems._aq_signed import SETTINGS, TARGET, WORKLOADS, Client, broker

BROKER = "redis"
LABEL = "aq + signing"
__all__ = ["BROKER", "LABEL", "SETTINGS", "TARGET", "WORKLOADS", "Client", "broker", "worker_argv"]


def worker_argv(workload: str) -> list[str]:
    return _aq_signed.worker_argv(__name__, workload)

"""aq with monitoring events on (``aq worker --events``): what emitting
task-received, task-started and task-succeeded costs per task in the drain.
The app is plain aq's (benchmarks/systems/_aq.py); only the worker differs."""

from __future__ import annotations

from benchmarks.systems._aq import Client, broker
from benchmarks.systems._aq import worker_argv as _plain_argv

SETTINGS = "worker --events (task-received, -started, -succeeded per task, and heartbeats)"
WORKLOADS = ("drain",)
#: The issue's floor: drain with events on at least this share of plain aq's.
TARGET = 0.85
__all__ = ["SETTINGS", "TARGET", "WORKLOADS", "Client", "broker", "worker_argv"]


def worker_argv(module: str, workload: str) -> list[str]:
    return [*_plain_argv(module, workload), "--events"]

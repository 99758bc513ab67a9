"""aq with Prometheus metrics on (``aq worker --metrics-port``): counting and
timing every task, in prometheus-client's multiprocess mode as the supervisor
runs it. The app is plain aq's (benchmarks/systems/_aq.py); only the worker
differs."""

from __future__ import annotations

from benchmarks.systems._aq import Client, broker
from benchmarks.systems._aq import worker_argv as _plain_argv

SETTINGS = "worker --metrics-port 0 (any free port; counters and a histogram per task)"
WORKLOADS = ("drain",)
#: No floor in the issue: the figure is reported, not judged.
TARGET = None
__all__ = ["SETTINGS", "TARGET", "WORKLOADS", "Client", "broker", "worker_argv"]


def worker_argv(module: str, workload: str) -> list[str]:
    return [*_plain_argv(module, workload), "--metrics-port", "0", "--metrics-host", "127.0.0.1"]

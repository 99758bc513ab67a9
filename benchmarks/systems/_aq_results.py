"""aq keeping results but not task states (``result_ttl``,
``track_states=False``): the worker keeps each result in the store, the
producer writes nothing more. The drain only; the baseline of the task
states' own cost (benchmarks/systems/_aq_states.py)."""

from __future__ import annotations

import os
import sys

import aq
from benchmarks.systems import _mark
from benchmarks.systems._aq_variant import noop_client

_URL = os.environ.get("AQBENCH_URL", "memory://")
# RabbitMQ keeps no state by key: results and states go to the bench's Redis.
_STORE = "redis://127.0.0.1:6379/15?prefix=aqbench-results" if _URL.startswith("amqp") else None
broker = aq.Broker(_URL, store=_STORE, result_ttl=600, track_states=False)

SETTINGS = "Broker(result_ttl=600, track_states=False): each task's result kept in the store"
WORKLOADS = ("drain",)
#: No floor in the issue: the figure is reported, not judged.
TARGET = None


@broker.task(name="bench.noop")
async def noop() -> None:
    _mark.done("noop")


def worker_argv(module: str, workload: str) -> list[str]:
    return [sys.executable, "-m", "aq", "worker", f"{module}:broker", "--log-level", "WARNING"]


Client = noop_client(broker, noop)

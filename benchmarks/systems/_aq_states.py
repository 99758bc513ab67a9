"""aq keeping results and task states (``result_ttl``): per task, the producer
writes ``queued`` beside the publish and the worker writes ``running`` and the
result. The drain only; compared with plain aq, which keeps nothing."""

from __future__ import annotations

import os
import sys

import aq
from benchmarks.systems import _mark
from benchmarks.systems._aq_variant import noop_client

_URL = os.environ.get("AQBENCH_URL", "memory://")
# RabbitMQ keeps no state by key: results and states go to the bench's Redis.
_STORE = "redis://127.0.0.1:6379/15?prefix=aqbench-states" if _URL.startswith("amqp") else None
broker = aq.Broker(_URL, store=_STORE, result_ttl=600)

SETTINGS = "Broker(result_ttl=600): each task's result and states kept in the store"
WORKLOADS = ("drain",)
#: No floor in the issue: the figure is reported, not judged.
TARGET = None


@broker.task(name="bench.noop")
async def noop() -> None:
    _mark.done("noop")


def worker_argv(module: str, workload: str) -> list[str]:
    return [sys.executable, "-m", "aq", "worker", f"{module}:broker", "--log-level", "WARNING"]


Client = noop_client(broker, noop)

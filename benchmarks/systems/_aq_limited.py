"""aq with a ``global_rate_limit`` far above what one worker reaches: what the
cluster-wide limiter costs per task when it never binds (the drain only)."""

from __future__ import annotations

import os
import sys

import aq
from benchmarks.systems import _mark
from benchmarks.systems._aq_variant import noop_client

_URL = os.environ.get("AQBENCH_URL", "memory://")
# RabbitMQ keeps no state by key: the limiter's state goes to the bench's Redis.
_STORE = "redis://127.0.0.1:6379/15?prefix=aqbench-limits" if _URL.startswith("amqp") else None
broker = aq.Broker(_URL, store=_STORE)

SETTINGS = 'noop with global_rate_limit="1000000/s", which never binds'
WORKLOADS = ("drain",)


@broker.task(name="bench.noop", global_rate_limit="1000000/s")
async def noop() -> None:
    _mark.done("noop")


def worker_argv(module: str, workload: str) -> list[str]:
    return [sys.executable, "-m", "aq", "worker", f"{module}:broker", "--log-level", "WARNING"]


Client = noop_client(broker, noop)

"""aq with a ``global_rate_limit`` far above what one worker reaches: what the
cluster-wide limiter costs per task when it never binds (the drain only)."""

from __future__ import annotations

import os
import sys
from types import TracebackType

import aq
from benchmarks.systems import _mark

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


class Client:
    def __init__(self, url: str) -> None:
        pass

    async def __aenter__(self) -> Client:
        await broker.__aenter__()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await broker.__aexit__(et, e, tb)

    async def send(self, kind: str) -> None:
        await noop.kiq()

    async def call(self) -> None:
        await (await noop.kiq()).result(timeout=30)

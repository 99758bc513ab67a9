"""aq's side of the benchmarks: the app both aq adapters serve."""

from __future__ import annotations

import asyncio
import os
import sys
from types import TracebackType

import aq
from benchmarks.systems import _mark

broker = aq.Broker(os.environ.get("AQBENCH_URL", "memory://"))


@broker.task(name="bench.noop")
async def noop() -> None:
    _mark.done("noop")


@broker.task(name="bench.sleep")
async def sleep() -> None:
    await asyncio.sleep(1)
    _mark.done("sleep")


# The worker's own default (1000) for the drain; for the fan-out, room for all of it.
CONCURRENCY = {"drain": 1000, "round_trip": 1000, "fanout": 10_000}
SETTINGS = "worker --concurrency 10000 for the fan-out (default 1000)"
WORKLOADS = ("drain", "round_trip", "fanout")


def worker_argv(module: str, workload: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "aq",
        "worker",
        f"{module}:broker",
        "--concurrency",
        str(CONCURRENCY[workload]),
        "--log-level",
        "WARNING",
    ]


class Client:
    def __init__(self, url: str) -> None:
        self._tasks = {"noop": noop, "sleep": sleep}

    async def __aenter__(self) -> Client:
        await broker.__aenter__()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await broker.__aexit__(et, e, tb)

    async def send(self, kind: str) -> None:
        await self._tasks[kind].kiq()

    async def call(self) -> None:
        await (await noop.kiq()).result(timeout=30)

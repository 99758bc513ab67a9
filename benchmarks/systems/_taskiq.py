"""taskiq's side of the benchmarks, shared by its Redis and RabbitMQ adapters.

Each adapter builds its broker and calls ``register(broker)``; everything else,
the tasks, the worker command and the producer, is the same on both.
"""

from __future__ import annotations

import asyncio
import sys
from types import TracebackType
from typing import Any

from taskiq import AsyncBroker

from benchmarks.systems import _mark

WORKLOADS = ("drain", "round_trip", "fanout")
CHECK_INTERVAL = 0.001  # seconds between the producer's looks for a result (default 0.2)
CALL_TIMEOUT = 30.0
# The drain prefetches one batch (100) beyond the 100 running tasks; the fan-out
# has room for all of itself.
WORKER_ARGS = {
    "drain": ["--max-prefetch", "100"],
    "round_trip": [],
    "fanout": ["--max-async-tasks", "10000"],
}
SETTINGS = (
    "worker --workers 1 --log-level WARNING; drain --max-prefetch 100 (default 0);"
    " fan-out --max-async-tasks 10000 (default 100);"
    f" wait_result(check_interval={CHECK_INTERVAL}) (default 0.2)"
)


def register(broker: AsyncBroker) -> dict[str, Any]:
    """The two benchmark tasks, on ``broker``."""

    @broker.task(task_name="bench.noop")
    async def noop() -> None:
        _mark.done("noop")

    @broker.task(task_name="bench.sleep")
    async def sleep() -> None:
        await asyncio.sleep(1)
        _mark.done("sleep")

    return {"noop": noop, "sleep": sleep}


def worker_argv(module: str, workload: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "taskiq",
        "worker",
        f"{module}:broker",
        "--workers",
        "1",
        "--log-level",
        "WARNING",
        *WORKER_ARGS[workload],
    ]


class Producer:
    """The producer's side of ``broker``, whose tasks are ``tasks``."""

    def __init__(self, broker: AsyncBroker, tasks: dict[str, Any]) -> None:
        self._broker = broker
        self._tasks = tasks

    async def __aenter__(self) -> Producer:
        if not self._broker.is_worker_process:
            await self._broker.startup()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self._broker.is_worker_process:
            await self._broker.shutdown()

    async def send(self, kind: str) -> None:
        await self._tasks[kind].kiq()

    async def call(self) -> None:
        task = await self._tasks["noop"].kiq()
        result = await task.wait_result(check_interval=CHECK_INTERVAL, timeout=CALL_TIMEOUT)
        result.raise_for_error()

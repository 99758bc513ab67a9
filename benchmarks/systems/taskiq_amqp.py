"""taskiq on RabbitMQ: taskiq-aio-pika's AioPikaBroker, results in taskiq-redis's backend.

Tasks go through taskiq-aio-pika's own topology (a durable topic exchange and a
quorum queue, persistent messages, publisher confirms, acked once the result is
saved). taskiq-aio-pika has no result backend, so results go to Redis
(``AQBENCH_RESULT_URL``, by default database 15) and are polled by the producer
(``wait_result``). One worker process, started by taskiq's own CLI.
"""

from __future__ import annotations

import asyncio
import os
import sys
from types import TracebackType

from taskiq_aio_pika import AioPikaBroker
from taskiq_redis import RedisAsyncResultBackend

from benchmarks.systems import URLS, _mark

BROKER = "amqp"
LABEL = "taskiq"
WORKLOADS = ("drain", "round_trip", "fanout")
URL = os.environ.get("AQBENCH_URL", URLS[BROKER])
RESULT_URL = os.environ.get("AQBENCH_RESULT_URL", URLS["redis"])
# RabbitMQ's prefetch (default 10). A task stays unacked until its result is
# saved, so the prefetch has to cover the fan-out's 10,000 running tasks; the
# broker object, and so its prefetch, is one for all workloads.
QOS = 10_000
CHECK_INTERVAL = 0.001  # seconds between the producer's looks for a result (default 0.2)
CALL_TIMEOUT = 30.0

broker = AioPikaBroker(URL, qos=QOS).with_result_backend(RedisAsyncResultBackend(RESULT_URL))


@broker.task(task_name="bench.noop")
async def noop() -> None:
    _mark.done("noop")


@broker.task(task_name="bench.sleep")
async def sleep() -> None:
    await asyncio.sleep(1)
    _mark.done("sleep")


# The drain prefetches 100 beyond the 100 running tasks; the fan-out has room for all of itself.
WORKER_ARGS = {
    "drain": ["--max-prefetch", "100"],
    "round_trip": [],
    "fanout": ["--max-async-tasks", "10000"],
}
SETTINGS = (
    f"AioPikaBroker(qos={QOS}) (default 10); results in RedisAsyncResultBackend"
    f" at {RESULT_URL} (taskiq-aio-pika has none);"
    " worker --workers 1 --log-level WARNING; drain --max-prefetch 100 (default 0);"
    " fan-out --max-async-tasks 10000 (default 100);"
    f" wait_result(check_interval={CHECK_INTERVAL}) (default 0.2)"
)


def worker_argv(workload: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "taskiq",
        "worker",
        f"{__name__}:broker",
        "--workers",
        "1",
        "--log-level",
        "WARNING",
        *WORKER_ARGS[workload],
    ]


TASKS = {"noop": noop, "sleep": sleep}


class Client:
    """The producer's side; the broker is the module's (its URL is ``AQBENCH_URL``)."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def __aenter__(self) -> Client:
        if not broker.is_worker_process:
            await broker.startup()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not broker.is_worker_process:
            await broker.shutdown()

    async def send(self, kind: str) -> None:
        await TASKS[kind].kiq()

    async def call(self) -> None:
        task = await noop.kiq()
        result = await task.wait_result(check_interval=CHECK_INTERVAL, timeout=CALL_TIMEOUT)
        result.raise_for_error()

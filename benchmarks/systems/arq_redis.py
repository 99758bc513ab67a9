"""arq on Redis: its enqueue rate, drain rate, round-trip latency and 1 s fan-out.

arq's worker polls: every ``poll_delay`` (0.5 s by default) it reads up to
``queue_read_limit`` job ids (max(5 * max_jobs, 100)) from the queue's sorted set
and starts them one by one, each behind its own WATCH/MULTI. Results are kept
(``keep_result`` 3600 s by default), and a caller waiting for one polls for it.
Runs in .venv-bench-arq (arq pins redis<6), so it imports nothing from aq.
"""

from __future__ import annotations

import asyncio
import os
import sys
from types import TracebackType
from typing import Any

from arq import ArqRedis, create_pool
from arq.connections import RedisSettings

from benchmarks.systems import _mark

BROKER = "redis"
LABEL = "arq"
WORKLOADS = ("drain", "round_trip", "fanout")

URL = os.environ.get("AQBENCH_URL", "redis://127.0.0.1:6379/15")
# The same concurrency as every system gets (aq's default, 1,000; 10,000 for the
# fan-out), and arq's two polling intervals cut from half a second, so that its
# latency is not just its polling.
MAX_JOBS = 1_000  # arq's default is 10
FANOUT_MAX_JOBS = 10_000
WORKER_POLL_S = 0.005  # Worker(poll_delay=...): arq's default is 0.5
RESULT_POLL_S = 0.001  # Job.result(poll_delay=...): arq's default is 0.5
RESULT_TIMEOUT_S = 30.0
SETTINGS = (
    f"max_jobs={MAX_JOBS:,}, {FANOUT_MAX_JOBS:,} for the fan-out (default 10); "
    f"worker poll_delay={WORKER_POLL_S} s (default 0.5); "
    f"job.result(poll_delay={RESULT_POLL_S}) (default 0.5); "
    "arq's loggers at WARNING (default INFO logs two lines a job)"
)

# For --custom-log-dict: arq's own default config, at WARNING.
LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"arq": {"level": "WARNING", "class": "logging.StreamHandler"}},
    "loggers": {"arq": {"handlers": ["arq"], "level": "WARNING"}},
}


async def noop(ctx: dict[str, Any]) -> None:
    _mark.done("noop")


async def sleep(ctx: dict[str, Any]) -> None:
    await asyncio.sleep(1)
    _mark.done("sleep")


# arq reads a settings class's own __dict__, not inherited attributes.
class WorkerSettings:
    functions = (noop, sleep)
    redis_settings = RedisSettings.from_dsn(URL)
    max_jobs = MAX_JOBS
    poll_delay = WORKER_POLL_S


class FanoutWorkerSettings:
    functions = (noop, sleep)
    redis_settings = RedisSettings.from_dsn(URL)
    max_jobs = FANOUT_MAX_JOBS
    poll_delay = WORKER_POLL_S


def worker_argv(workload: str) -> list[str]:
    settings = FanoutWorkerSettings if workload == "fanout" else WorkerSettings
    return [
        sys.executable,
        "-m",
        "arq",
        f"{__name__}.{settings.__name__}",
        "--custom-log-dict",
        f"{__name__}.LOG_CONFIG",
    ]


class Client:
    def __init__(self, url: str) -> None:
        self._settings = RedisSettings.from_dsn(url)
        self._redis: ArqRedis | None = None

    async def __aenter__(self) -> Client:
        self._redis = await create_pool(self._settings)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._redis is not None:
            await self._redis.aclose()

    async def send(self, kind: str) -> None:
        assert self._redis is not None
        await self._redis.enqueue_job(kind)

    async def call(self) -> None:
        assert self._redis is not None
        job = await self._redis.enqueue_job("noop")
        assert job is not None
        await job.result(timeout=RESULT_TIMEOUT_S, poll_delay=RESULT_POLL_S)

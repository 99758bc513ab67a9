"""taskiq on Redis: taskiq-redis's RedisStreamBroker, results in its RedisAsyncResultBackend.

Tasks go through one Redis stream (XADD, XREADGROUP, XACK once the result is
saved); results are written to the same Redis and polled by the producer
(``wait_result``). One worker process, started by taskiq's own CLI. The tasks,
worker command and producer are in benchmarks/systems/_taskiq.py.
"""

from __future__ import annotations

import os

from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

from benchmarks.systems import URLS, _taskiq
from benchmarks.systems._taskiq import WORKLOADS

BROKER = "redis"
LABEL = "taskiq"
URL = os.environ.get("AQBENCH_URL", URLS[BROKER])
SETTINGS = _taskiq.SETTINGS
__all__ = ["BROKER", "LABEL", "SETTINGS", "WORKLOADS", "Client", "broker", "worker_argv"]

broker = RedisStreamBroker(URL).with_result_backend(RedisAsyncResultBackend(URL))
TASKS = _taskiq.register(broker)


def worker_argv(workload: str) -> list[str]:
    return _taskiq.worker_argv(__name__, workload)


class Client(_taskiq.Producer):
    def __init__(self, url: str) -> None:  # the broker is the module's, on AQBENCH_URL
        super().__init__(broker, TASKS)

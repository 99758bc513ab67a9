"""taskiq on RabbitMQ: taskiq-aio-pika's AioPikaBroker, results in taskiq-redis's backend.

Tasks go through taskiq-aio-pika's own topology (a durable topic exchange and a
quorum queue, persistent messages, publisher confirms, acked once the result is
saved). taskiq-aio-pika has no result backend, so results go to Redis
(``AQBENCH_RESULT_URL``, by default database 15) and are polled by the producer
(``wait_result``). One worker process, started by taskiq's own CLI. The tasks,
worker command and producer are in benchmarks/systems/_taskiq.py.
"""

from __future__ import annotations

import os

from taskiq_aio_pika import AioPikaBroker
from taskiq_redis import RedisAsyncResultBackend

from benchmarks.systems import URLS, _taskiq
from benchmarks.systems._taskiq import WORKLOADS

BROKER = "amqp"
LABEL = "taskiq"
URL = os.environ.get("AQBENCH_URL", URLS[BROKER])
RESULT_URL = os.environ.get("AQBENCH_RESULT_URL", URLS["redis"])
# RabbitMQ's prefetch (default 10). A task stays unacked until its result is
# saved, so the prefetch has to cover the fan-out's 10,000 running tasks; the
# broker object, and so its prefetch, is one for all workloads.
QOS = 10_000
SETTINGS = (
    f"AioPikaBroker(qos={QOS}) (default 10); results in RedisAsyncResultBackend"
    f" at {RESULT_URL} (taskiq-aio-pika has none); {_taskiq.SETTINGS}"
)
__all__ = ["BROKER", "LABEL", "SETTINGS", "WORKLOADS", "Client", "broker", "worker_argv"]

broker = AioPikaBroker(URL, qos=QOS).with_result_backend(RedisAsyncResultBackend(RESULT_URL))
TASKS = _taskiq.register(broker)


def worker_argv(workload: str) -> list[str]:
    return _taskiq.worker_argv(__name__, workload)


class Client(_taskiq.Producer):
    def __init__(self, url: str) -> None:  # the broker is the module's, on AQBENCH_URL
        super().__init__(broker, TASKS)

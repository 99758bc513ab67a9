"""The systems `make bench` measures, each behind one small adapter module.

An adapter is ``benchmarks/systems/<name>.py``. It is imported both by the
driver (benchmarks/run_one.py, the producer process) and, as the worker's app,
by the worker process it starts; both find the broker's URL in ``AQBENCH_URL``.
It defines:

  BROKER        "redis" or "amqp": which server it runs against.
  LABEL         how the table names it.
  SETTINGS      every setting that differs from the system's defaults, as text
                shown beside its figures.
  WORKLOADS     the workloads it takes part in: "drain", "round_trip", "fanout".
  worker_argv(workload) -> list[str]
                the command that runs exactly one worker process serving the
                module's tasks (for a "fanout", with concurrency as high as the
                system allows).
  Client(url)   an async context manager with
                  async send(kind)  enqueue one task, "noop" or "sleep", and
                                    return once the broker has it;
                  async call()      enqueue a no-op and wait for its result.

The tasks themselves, a no-op and ``await asyncio.sleep(1)``, call
``benchmarks.systems._mark.done(kind)`` as their last statement.

Adapters import only their own system (and the standard library): arq runs in
a virtualenv of its own.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class System:
    name: str  # the adapter module, benchmarks.systems.<name>
    broker: str  # "redis" or "amqp"
    packages: tuple[str, ...]  # distributions whose versions the table records
    venv: str = ".venv-bench"  # the virtualenv whose python runs it
    ceiling: bool = False  # the bare client library: the transport's limit, not a peer
    variant: bool = False  # aq with a feature switched on: compared with plain aq, not a peer


SYSTEMS: tuple[System, ...] = (
    System("aq_redis", "redis", ("aq-tasks", "redis")),
    System("aq_redis_limited", "redis", ("aq-tasks", "redis"), variant=True),
    System("aq_redis_events", "redis", ("aq-tasks", "redis"), variant=True),
    System("aq_redis_results", "redis", ("aq-tasks", "redis"), variant=True),
    System("aq_redis_states", "redis", ("aq-tasks", "redis"), variant=True),
    System("aq_redis_metrics", "redis", ("aq-tasks", "redis", "prometheus-client"), variant=True),
    System("aq_redis_signed", "redis", ("aq-tasks", "redis"), variant=True),
    System("taskiq_redis", "redis", ("taskiq", "taskiq-redis")),
    System("arq_redis", "redis", ("arq", "redis"), venv=".venv-bench-arq"),
    System("saq_redis", "redis", ("saq",)),
    System("streaq_redis", "redis", ("streaq", "coredis")),
    System("bare_redis", "redis", ("redis", "hiredis"), ceiling=True),
    System("aq_amqp", "amqp", ("aq-tasks", "aio-pika")),
    System("aq_amqp_limited", "amqp", ("aq-tasks", "aio-pika", "redis"), variant=True),
    System("aq_amqp_events", "amqp", ("aq-tasks", "aio-pika"), variant=True),
    System("aq_amqp_results", "amqp", ("aq-tasks", "aio-pika", "redis"), variant=True),
    System("aq_amqp_states", "amqp", ("aq-tasks", "aio-pika", "redis"), variant=True),
    System("aq_amqp_metrics", "amqp", ("aq-tasks", "aio-pika", "prometheus-client"), variant=True),
    System("aq_amqp_signed", "amqp", ("aq-tasks", "aio-pika"), variant=True),
    System("taskiq_amqp", "amqp", ("taskiq", "taskiq-aio-pika")),
    System("celery_amqp", "amqp", ("celery", "kombu")),
    System("bare_amqp", "amqp", ("aio-pika", "aiormq"), ceiling=True),
)

URLS = {
    "redis": "redis://127.0.0.1:6379/15",
    "amqp": "amqp://guest:guest@127.0.0.1:5672/aqbench",
}

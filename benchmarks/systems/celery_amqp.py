"""Celery on RabbitMQ, with results pushed back over AMQP (the ``rpc://`` backend).

Celery's client is synchronous: ``send`` runs ``apply_async`` in asyncio's
default thread pool, so that a batch of sends overlaps a few at a time, each
waiting for its publisher confirm (and, for the rpc backend, a declare of the
reply queue); ``call`` blocks the driver's loop, which has nothing else to do.
The tasks are plain functions. The drain and the round trip run them in the
solo pool (inline, one process); the fan-out in a gevent pool, whose
monkeypatching (applied by ``celery worker -P gevent``) makes ``time.sleep``
yield to the other greenlets.

The solo pool runs on kombu's event loop, which sends a message's ack only on
its next turn, after polling the socket; when the prefetch window is full of
done-but-unacked messages nothing arrives and the poll waits for the next timer
(up to 10 s). With the default window (4 per slot) a drain stalls like that
again and again; the Optimizing guide's large multiplier keeps it open.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from types import TracebackType

from celery import Celery

from benchmarks.systems import _mark

BROKER = "amqp"
LABEL = "celery"
WORKLOADS = ("drain", "round_trip", "fanout")
PREFETCH_MULTIPLIER = 128  # default 4
FANOUT_CONCURRENCY = 10_000
SETTINGS = (
    "result_backend rpc://; producer confirm_publish, sends from a thread pool; "
    "worker --without-gossip --without-mingle --without-heartbeat; "
    f"drain and round trip: --pool solo --concurrency 1 "
    f"--prefetch-multiplier {PREFETCH_MULTIPLIER}; "
    f"fan-out: --pool gevent --concurrency {FANOUT_CONCURRENCY}"
)

app = Celery(
    "aqbench",
    broker=os.environ.get("AQBENCH_URL", "amqp://guest:guest@127.0.0.1:5672/aqbench"),
    backend="rpc://",
)


@app.task(name="bench.noop")
def noop() -> None:
    _mark.done("noop")


@app.task(name="bench.sleep")
def sleep() -> None:
    time.sleep(1)  # cooperative under the gevent pool's monkeypatching
    _mark.done("sleep")


def worker_argv(workload: str) -> list[str]:
    if workload == "fanout":
        pool = ["--pool", "gevent", "--concurrency", str(FANOUT_CONCURRENCY)]
    else:
        pool = ["--pool", "solo", "--concurrency", "1"]
        pool += ["--prefetch-multiplier", str(PREFETCH_MULTIPLIER)]
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        __name__,
        "worker",
        *pool,
        # Worker-to-worker chatter and startup sync, of no use to a lone worker.
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "--loglevel",
        "WARNING",
    ]


class Client:
    def __init__(self, url: str) -> None:
        app.conf.broker_url = url
        # The producer's only: send() returns once RabbitMQ has confirmed the task.
        app.conf.broker_transport_options = {"confirm_publish": True}
        self._tasks = {"noop": noop, "sleep": sleep}

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        # The reply queue would outlive this process by a day (its x-expires),
        # holding the results of send(), which nobody reads.
        with app.connection_for_write() as conn:
            app.backend.binding(conn.default_channel).delete()
        app.close()

    async def send(self, kind: str) -> None:
        # Celery's client blocks: threads let the driver's batch of sends overlap.
        await asyncio.to_thread(self._tasks[kind].apply_async)

    async def call(self) -> None:
        noop.apply_async().get(timeout=30)

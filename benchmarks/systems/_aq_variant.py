"""What the drain-only aq variants share: a client that sends ``noop``, and
the app of the variants that keep results."""

from __future__ import annotations

import os
import sys
from types import TracebackType
from typing import Any

import aq
from benchmarks.systems import _mark


def noop_client(broker: aq.Broker, noop: Any) -> type:
    """The benchmark client of a variant whose one task is ``noop`` on ``broker``."""

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

    return Client


def stored_app(track_states: bool) -> tuple[aq.Broker, Any, type]:
    """(broker, noop, Client) of an app that keeps results (``result_ttl``), and
    task states when ``track_states``."""
    url = os.environ.get("AQBENCH_URL", "memory://")
    # RabbitMQ keeps no state by key: results and states go to the bench's Redis.
    prefix = "aqbench-states" if track_states else "aqbench-results"
    store = f"redis://127.0.0.1:6379/15?prefix={prefix}" if url.startswith("amqp") else None
    broker = aq.Broker(url, store=store, result_ttl=600, track_states=track_states)

    @broker.task(name="bench.noop")
    async def noop() -> None:
        _mark.done("noop")

    return broker, noop, noop_client(broker, noop)


def plain_worker_argv(module: str, workload: str) -> list[str]:
    """``aq worker`` for ``module``'s broker, its defaults otherwise."""
    return [sys.executable, "-m", "aq", "worker", f"{module}:broker", "--log-level", "WARNING"]

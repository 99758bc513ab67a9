"""Helpers for testing code that sends aq tasks.

``async with aq.testing.running_worker(broker) as worker:`` runs a real worker
in the current event loop (on the memory broker, or any other); ``await
worker.wait_idle()`` returns once every queued task, including retries and
delayed tasks, has been processed. ``await aq.testing.drain(broker)`` does both
in one call. Pytest fixtures live in :mod:`aq.testing.pytest_plugin`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

from aq.broker import Broker
from aq.worker.options import CrashMode
from aq.worker.worker import Worker

__all__ = ["drain", "running_worker"]


@contextlib.asynccontextmanager
async def running_worker(
    broker: Broker,
    *,
    queues: Sequence[str] | None = None,
    concurrency: int = 100,
    shutdown_timeout: float = 5.0,
    crashes: CrashMode = "inline",
    scheduler: bool = False,
    events: bool = False,
    default_timeout: float | None = None,
    default_retries: int | None = None,
    default_rate_limit: str | None = None,
) -> AsyncIterator[Worker]:
    """Run a worker on ``broker`` in this event loop for the ``async with`` block
    (the options as for :class:`aq.Worker`)."""
    worker = Worker(
        broker,
        queues=queues,
        concurrency=concurrency,
        shutdown_timeout=shutdown_timeout,
        crashes=crashes,
        scheduler=scheduler,
        events=events,
        default_timeout=default_timeout,
        default_retries=default_retries,
        default_rate_limit=default_rate_limit,
    )
    await worker.start()
    try:
        yield worker
    finally:
        await worker.stop()


async def drain(broker: Broker, *, queues: Sequence[str] | None = None) -> None:
    """Run a worker until ``broker``'s queues are empty and nothing runs, then stop it."""
    async with running_worker(broker, queues=queues) as worker:
        await worker.wait_idle()

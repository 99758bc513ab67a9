"""A worker app for the monitoring tests (``aq top``, ``aq inspect``, metrics).

``AQ_BROKER_URL`` names the broker, ``AQ_TEST_STORE_URL`` (Redis) its store
when it is RabbitMQ; results (and with them task states) are kept for a
minute. ``work`` sleeps ``ms`` milliseconds, ``flaky`` fails when
told to, and ``hold`` runs until cancelled or ``seconds`` pass.
"""

from __future__ import annotations

import asyncio
import os

import aq

broker = aq.Broker(store=os.environ.get("AQ_TEST_STORE_URL"), result_ttl=60.0)


@broker.task
async def work(ms: int) -> int:
    """Sleep ``ms`` milliseconds; return ``ms``."""
    await asyncio.sleep(ms / 1000)
    return ms


@broker.task(retries=1, retry_backoff=0.05)
async def flaky(fail: bool) -> None:
    """Fail (both attempts) when ``fail``."""
    if fail:
        raise RuntimeError("told to fail")


@broker.task
async def hold(seconds: float) -> None:
    """Run for ``seconds``."""
    await asyncio.sleep(seconds)

"""The tasks the benchmarks run; the broker comes from AQ_BROKER_URL."""

from __future__ import annotations

import asyncio

import aq

broker = aq.Broker()


@broker.task(name="bench.noop")
async def noop() -> None:
    """Does nothing: measures the queue, not the work."""


@broker.task(name="bench.sleep")
async def sleep(seconds: float) -> None:
    """Waits: measures how many tasks one worker holds at once."""
    await asyncio.sleep(seconds)

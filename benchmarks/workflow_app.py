"""The worker app of benchmarks/workflows.py: a no-op task and a chord body.

``AQBENCH_URL`` names the broker and ``AQBENCH_STORE`` the store (the bench's
Redis, for RabbitMQ).
"""

from __future__ import annotations

import os

import aq

broker = aq.Broker(
    os.environ.get("AQBENCH_URL", "memory://"), store=os.environ.get("AQBENCH_STORE")
)


@broker.task(name="bench.noop", timeout=60)
async def noop() -> None:
    return None


@broker.task(name="bench.count", timeout=60)
async def count(results: list[None]) -> int:
    return len(results)

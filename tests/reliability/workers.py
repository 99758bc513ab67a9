"""Worker processes for the crash tests, running tests/apps/reliable.py, and the
wait for their task starts, which that app announces in a Redis list."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from redis.asyncio import Redis

__all__ = ["start_worker", "wait_for_starts"]

ROOT = Path(__file__).resolve().parents[2]


async def start_worker(broker_url: str, record_url: str) -> asyncio.subprocess.Process:
    """`aq worker tests.apps.reliable:broker` on ``broker_url``, recording to ``record_url``."""
    env = {k: v for k, v in os.environ.items() if k != "AQ_BROKER_URL"}
    env |= {"AQ_BROKER_URL": broker_url, "AQ_TEST_RECORD_URL": record_url}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aq",
        "worker",
        "tests.apps.reliable:broker",
        "--concurrency",
        "1000",
        "--log-level",
        "WARNING",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def wait_for_starts(record: Redis, count: int, seconds: float = 30) -> None:
    """Return once ``count`` task starts have been announced."""
    seen = 0
    async with asyncio.timeout(seconds):
        while seen < count:  # BLMPOP: woken by each start, no polling
            popped = await record.blmpop(1, 1, "started", direction="LEFT", count=count)
            seen += len(popped[1]) if popped else 0

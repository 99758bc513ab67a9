"""An app served over a network broker: ``AQ_BROKER_URL`` names it."""

from __future__ import annotations

import os

import aq

broker = aq.Broker()


@broker.task(name="remote.add")
async def add(a: int, b: int) -> int:
    """Return ``a + b``."""
    return a + b


@broker.task(name="remote.pid")
async def pid() -> int:
    """Return the id of the worker process that runs it."""
    return os.getpid()

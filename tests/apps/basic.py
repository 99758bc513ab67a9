"""A minimal app for ``aq worker tests.apps.basic:broker``: two trivial tasks."""

from __future__ import annotations

import aq

broker = aq.Broker("memory://")


@broker.task
async def add(a: int, b: int) -> int:
    """Return ``a + b``."""
    return a + b


@broker.task
def ping() -> str:
    """Return ``"pong"``."""
    return "pong"


NOT_A_BROKER = "a string, not an aq.Broker"

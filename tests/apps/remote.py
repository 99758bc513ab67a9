"""An app served over a network broker: ``AQ_BROKER_URL`` names it."""

from __future__ import annotations

import aq

broker = aq.Broker()


@broker.task(name="remote.add")
async def add(a: int, b: int) -> int:
    """Return ``a + b``."""
    return a + b

"""An app for the monitoring commands' own tests: one task on ``memory://``
(imported only by tests/test_cli_monitor.py, so no other test's
``AQ_BROKER_URL`` can have chosen its broker)."""

from __future__ import annotations

import aq

broker = aq.Broker("memory://quiet", result_ttl=60)


@broker.task
async def add(a: int, b: int) -> int:
    """Return ``a + b``."""
    return a + b

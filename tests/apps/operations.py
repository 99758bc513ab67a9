"""An app for the supervisor's operations (``--autoscale``, ``--max-memory-per-child``),
served over the network broker ``AQ_BROKER_URL`` names."""

from __future__ import annotations

import os
import time

import aq

broker = aq.Broker()

#: What ``leak`` keeps, on purpose, for as long as the process lives.
_LEAKED: list[bytes] = []


@broker.task(name="operations.spin")
async def spin(seconds: float) -> int:
    """Keep a core busy for ``seconds``, blocking the event loop; return the pid."""
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass
    return os.getpid()


@broker.task(name="operations.leak")
async def leak(megabytes: int) -> int:
    """Keep ``megabytes`` of memory for ever (written, so resident); return the pid."""
    _LEAKED.append(b"\x01" * (megabytes << 20))
    return os.getpid()

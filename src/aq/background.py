"""Background loops that never die silently.

Every long-running loop aq starts (a worker's consume loop, control listener
and heartbeat; a transport's fetchers, scheduler, reclaimer and inbox readers;
a producer's reply reader) runs under :func:`keep_running`. Each loop handles
the errors it expects (a lost connection, a bad entry) itself; anything else
that escapes it is logged with its traceback as ``loop.restarted`` and the
loop is started again after a delay that grows from 0.1 s to 30 s while it
keeps failing. So one bad iteration never leaves a worker that looks alive
while it does nothing. Cancellation stops a loop as usual.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from aq.logs import event

__all__ = ["keep_running", "start"]

log = logging.getLogger("aq.background")

Loop = Callable[[], Coroutine[Any, Any, None]]

_FIRST_DELAY = 0.1
_MAX_DELAY = 30.0
_HEALTHY_AFTER = 60.0  # a loop that ran this long before failing starts over at the first delay


async def keep_running(name: str, loop: Loop) -> None:
    """Run ``loop()`` until it returns or is cancelled, restarting it whenever it raises."""
    delay = _FIRST_DELAY
    while True:
        began = time.monotonic()
        try:
            await loop()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if time.monotonic() - began > _HEALTHY_AFTER:
                delay = _FIRST_DELAY
            event(
                log,
                logging.ERROR,
                "loop.restarted",
                exc_info=exc,
                loop=name,
                delay=delay,
                error=f"{type(exc).__name__}: {exc}",
            )
        await asyncio.sleep(delay)
        delay = min(_MAX_DELAY, delay * 2)


def start(name: str, loop: Loop) -> asyncio.Task[None]:
    """Start ``loop`` under :func:`keep_running` as a task named ``name``."""
    return asyncio.create_task(keep_running(name, loop), name=name)

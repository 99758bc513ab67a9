"""Running a scheduler as a process (``aq scheduler``) or beside a worker.

:func:`run` is what ``aq scheduler`` calls: one event loop (uvloop's when
installed), a :class:`~aq.scheduling.scheduler.Scheduler` campaigning and
firing until SIGTERM or SIGINT, which make it resign its leadership so another
scheduler takes over at once instead of after the lease time.
"""

from __future__ import annotations

import asyncio
import signal

from aq import background
from aq.broker import Broker
from aq.scheduling.scheduler import Scheduler
from aq.worker.runner import loop_factory

__all__ = ["run", "serve"]


async def serve(broker: Broker, lease_time: float) -> None:
    """Run a scheduler on ``broker`` until a signal stops it."""
    scheduler = Scheduler(broker, lease_time=lease_time)
    loop = asyncio.get_running_loop()
    # Restarted if anything unforeseen escapes it, as a worker's loops are.
    running = background.start("aq-scheduler", scheduler.run)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, running.cancel)
    try:
        await running
    except asyncio.CancelledError:
        pass
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await broker.shutdown()


def run(broker: Broker, lease_time: float, loop: str = "auto") -> None:
    """Run a scheduler in a fresh event loop until it is stopped."""
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        runner.run(serve(broker, lease_time))

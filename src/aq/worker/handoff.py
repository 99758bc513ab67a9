"""Handing an outcome off to a broker that is down: wait for it, within a bound.

A task's outcome is handed off (its reply sent, its retry published, its
message dead-lettered) before its message is acked. When the broker cannot be
reached meanwhile, that is an outage, not a fault of the task or of the
worker: :class:`HandOff` keeps the step and tries it again, with a delay
growing to 5 s, until it goes through or ``timeout`` seconds have passed. So a
task that finished during a short outage is not run again (on Redis; on
RabbitMQ the lost connection has already returned its message, which runs
again, but its caller still gets the first result).

The log says what happens, once per task: ``worker.handoff_waiting`` when a
step first fails, ``worker.handoff_resumed`` when it went through after all,
and ``worker.handoff_abandoned`` when the bound ran out: the message is then
left to the broker, which delivers it again, so the task runs again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aq.errors import AQError, BrokerUnavailable, ConnectionLost
from aq.logs import event
from aq.worker.options import DEFAULT_HANDOFF_TIMEOUT

__all__ = ["OUTAGE", "HandOff", "HandOffAbandoned"]

log = logging.getLogger("aq.worker")

#: Seconds a worker keeps an outcome it cannot hand off, by default.
#: The errors that mean the broker could not be reached.
OUTAGE = (BrokerUnavailable, ConnectionLost)
_FIRST_DELAY = 0.5
_MAX_DELAY = 5.0


class HandOffAbandoned(AQError):
    """The broker stayed unreachable longer than the hand-off timeout; the message
    was left to be delivered again."""


class HandOff:
    """Runs hand-off steps, riding out broker outages for up to ``timeout`` seconds."""

    def __init__(self, timeout: float = DEFAULT_HANDOFF_TIMEOUT) -> None:
        self.timeout = timeout

    async def __call__(self, task_id: str, name: str, step: Callable[[], Awaitable[None]]) -> None:
        """Run ``step``; while it fails for a broker outage, wait and run it again.

        Raises:
            HandOffAbandoned: the outage outlasted ``timeout`` (logged).
        """
        try:
            await step()
        except OUTAGE as exc:
            await self.wait_out(task_id, name, step, exc)

    async def wait_out(
        self,
        task_id: str,
        name: str,
        step: Callable[[], Awaitable[None]],
        error: BaseException,
    ) -> None:
        """``step`` failed with ``error`` for an outage: run it again until it works.

        Raises:
            HandOffAbandoned: the outage outlasted ``timeout`` (logged).
        """
        began = time.monotonic()
        event(
            log,
            logging.WARNING,
            "worker.handoff_waiting",
            task_id=task_id,
            name=name,
            bound=self.timeout,
            error=error,
            note="the broker is unreachable; the outcome is kept until it is back",
        )
        delay = _FIRST_DELAY
        while (waited := time.monotonic() - began) < self.timeout:
            await asyncio.sleep(min(delay, self.timeout - waited))
            delay = min(_MAX_DELAY, delay * 2)
            try:
                await step()
            except OUTAGE as exc:
                error = exc
                continue
            event(
                log,
                logging.INFO,
                "worker.handoff_resumed",
                task_id=task_id,
                name=name,
                waited=time.monotonic() - began,
            )
            return
        event(
            log,
            logging.WARNING,
            "worker.handoff_abandoned",
            task_id=task_id,
            name=name,
            waited=time.monotonic() - began,
            error=error,
            note="the broker stayed unreachable; the message is left to be delivered "
            "again, and the task will run again",
        )
        raise HandOffAbandoned(f"gave up handing off task {task_id}: {error}") from error

"""Doing in one go on the next event-loop turn what was asked for during this one.

A worker that finishes hundreds of tasks in one turn asks for hundreds of acks
and replies; sent one by one they cost a round trip each. The batchers of each
backend (Redis pipelines, RabbitMQ reply batches and ack windows) gather the
requests of a turn and send them together. :class:`LoopTurn` is their clock: it
runs a flush once on the next turn however often it is asked for in this one,
and keeps the sending tasks it starts, so closing can wait for them.
:func:`complete` hands each caller its share of a batch's outcome.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

__all__ = ["LoopTurn", "complete", "share", "share_outcome"]


class LoopTurn:
    """Calls ``flush`` on the next event-loop turn after :meth:`request`, once."""

    __slots__ = ("_flush", "requested", "running")

    def __init__(self, flush: Callable[[], None]) -> None:
        self._flush = flush
        #: A flush is due on the next turn (read-only outside this class).
        self.requested = False
        #: Sending tasks started by flushes and not yet finished.
        self.running: set[asyncio.Task[None]] = set()

    @property
    def busy(self) -> bool:
        """A flush is due, or something it started is still being sent."""
        return self.requested or bool(self.running)

    def request(self) -> None:
        """Have ``flush`` run on the next turn (once, however often this is called)."""
        if not self.requested:
            self.requested = True
            asyncio.get_running_loop().call_soon(self._run)

    def _run(self) -> None:
        if self.requested:  # not when flush_now() ran it already
            self.requested = False
            self._flush()

    def flush_now(self) -> None:
        """Run a requested flush at once instead of on the next turn."""
        self._run()

    def start(self, sending: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Start one batch's sending task, kept until it finishes."""
        task = asyncio.create_task(sending)
        self.running.add(task)
        task.add_done_callback(self.running.discard)
        return task

    async def drain(self) -> None:
        """Flush what is requested now and wait for every batch being sent."""
        self.flush_now()
        while self.running:
            await asyncio.gather(*self.running, return_exceptions=True)


async def complete(
    futures: Sequence[asyncio.Future[Any]], send: Awaitable[Sequence[Any] | None]
) -> BaseException | None:
    """Await ``send`` (one batch) and settle each caller's future with its share.

    ``send`` returns one result per future (an exception instance fails only
    that future), or ``None`` when every caller just waits for the batch. If it
    raises, every future gets the error, which is returned (and re-raised if it
    is not an ``Exception``: a cancellation).
    """
    try:
        results = await send
    except BaseException as exc:
        share(futures, None, exc)
        if not isinstance(exc, Exception):
            raise
        return exc
    share(futures, results, None)
    return None


def share_outcome(futures: Sequence[asyncio.Future[Any]], whole: asyncio.Future[Any]) -> None:
    """:func:`share` the outcome of the finished future ``whole`` (a done callback)."""
    if whole.cancelled():
        share(futures, None, asyncio.CancelledError())
    elif (error := whole.exception()) is not None:
        share(futures, None, error)
    else:
        share(futures, whole.result(), None)


def share(
    futures: Sequence[asyncio.Future[Any]],
    results: Sequence[Any] | None,
    error: BaseException | None,
) -> None:
    """Settle each future with its result (an exception instance fails it), or all
    with ``error``. Futures already done (their caller was cancelled; the work
    went anyway) are left alone."""
    shares: Sequence[Any] = [None] * len(futures) if results is None else results
    for future, result in zip(futures, shares, strict=True):
        if future.done():
            continue
        failure = error if error is not None else result if isinstance(result, Exception) else None
        if failure is not None:
            future.set_exception(failure)
        else:
            future.set_result(result)

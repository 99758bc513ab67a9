"""Riding out outages: growing waits between attempts, and retrying to a deadline.

Every loop that talks to a server (a fetcher, an inbox reader, a consumer that
resumes after a cancel, a publish) waits a little after a failure, twice as
long after the next, up to a ceiling, and starts again from the shortest wait
once an attempt works: :class:`ReconnectDelay`. An operation a caller waits for
(a publish, a settlement) is retried that way only until a deadline, then fails
with :class:`aq.BrokerUnavailable`: :func:`retry_until`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aq.errors import BrokerUnavailable, ConnectionLost

__all__ = ["ReconnectDelay", "Translate", "retry_until"]

T = TypeVar("T")

#: Turns a client library's errors met while doing ``what`` into aq's tree
#: (connection trouble into :class:`aq.ConnectionLost`).
Translate = Callable[[str], contextlib.AbstractContextManager[None]]


class ReconnectDelay:
    """Waits of ``first`` seconds, doubled after each failure up to ``most``."""

    __slots__ = ("_next", "first", "most")

    def __init__(self, first: float = 0.05, most: float = 2.0) -> None:
        self.first = first
        self.most = most
        self._next = first

    def next(self) -> float:
        """The wait before the next attempt (and double the one after it)."""
        delay = self._next
        self._next = min(self.most, delay * 2)
        return delay

    def reset(self) -> None:
        """An attempt worked: the next failure waits the shortest time again."""
        self._next = self.first

    async def wait(self, at_most: float | None = None) -> None:
        """Sleep for :meth:`next`, or ``at_most`` seconds if that is shorter."""
        delay = self.next()
        await asyncio.sleep(delay if at_most is None else max(0.0, min(delay, at_most)))


async def retry_until(
    what: str,
    attempt: Callable[[float], Awaitable[T]],
    deadline: float,
    *,
    translate: Translate,
    server: str,
    log: logging.Logger,
    most: float = 2.0,
    after: Callable[[], None] | None = None,
) -> T:
    """Run ``attempt(seconds_left)``, again after each lost connection, for
    ``deadline`` seconds.

    Args:
        what: what the attempt does, for messages ("publish to emails").
        attempt: the operation; it is given the seconds left, to bound a step
            that could hang (waiting for a confirm on a dead connection).
        deadline: seconds before giving up.
        translate: the backend's translation of its client's errors (entered
            only when an attempt fails: a context manager costs a microsecond,
            and this runs for every message sent).
        server: the server's name for messages ("Redis", "RabbitMQ").
        log: where each retry is logged, as a warning.
        most: the longest wait between attempts.
        after: called after an attempt that worked (Redis: re-raise a
            cancellation the client swallowed).

    Raises:
        aq.BrokerUnavailable: the server could not be reached before the deadline.
        aq.BrokerError: the server refused the operation (not retried).
    """
    give_up = time.monotonic() + deadline
    left = deadline
    delays: ReconnectDelay | None = None  # made at the first failure: most calls have none
    cause: BaseException | None = None  # the last error that said more than "timed out"
    while True:
        try:
            try:
                result = await attempt(left)
            except Exception as exc:
                with translate(what):
                    raise exc from exc.__cause__
                raise  # a translation that let it pass: not aq's to judge
            if after is not None:
                after()
            return result
        except ConnectionLost as exc:
            if not isinstance(exc.__cause__, TimeoutError) or cause is None:
                cause = exc.__cause__
            left = give_up - time.monotonic()
            if left <= 0:
                raise BrokerUnavailable(
                    f"{what}: {server} unreachable for {deadline:g} s ({cause!r})"
                ) from exc
            log.warning("%s: %s; retrying", what, exc)
            delays = delays or ReconnectDelay(most=most)
            await delays.wait(at_most=left)
            left = max(give_up - time.monotonic(), 0.001)

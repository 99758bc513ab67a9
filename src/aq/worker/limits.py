"""Per-task limits inside one worker: rate limits and concurrency caps.

A rate limit such as ``"100/s"`` (parsed in :mod:`aq.options`) is a token
bucket that holds one period's worth of tokens, so a burst up to the limit runs
at once and the rest is spaced evenly. Reservations may drive the bucket below
zero; each caller then sleeps exactly until its token exists, which keeps
waiters in arrival order without a lock. ``aq control rate-limit`` replaces a
task's rate limit in a running worker (:meth:`TaskLimits.set_rate`) until it
restarts; its concurrency cap stays as it is. A worker's ``--default-rate-limit``
applies, per task, to each task that sets no rate limit of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aq.task import _BaseTask

from aq.options import RateLimit

__all__ = ["RateLimiter", "TaskLimits"]


class RateLimiter:
    """A token bucket for one task in one worker process."""

    __slots__ = ("_capacity", "_rate", "_replaced", "_stamp", "_tokens")

    def __init__(self, limit: RateLimit) -> None:
        self._rate = limit.per_second
        self._capacity = max(1.0, limit.count)
        self._tokens = self._capacity
        self._stamp = time.monotonic()
        #: Set when another limit replaces this one: its sleepers wake to use that.
        self._replaced: asyncio.Event | None = None

    def reserve(self) -> float:
        """Take a token; return how many seconds to wait before using it."""
        now = time.monotonic()
        self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self._rate

    async def acquire(self) -> bool:
        """Wait until the next execution is allowed: ``True``; ``False`` if this
        limiter was replaced meanwhile (the caller asks the new one)."""
        wait = self.reserve()
        if wait <= 0:
            return True
        if self._replaced is None:
            self._replaced = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self._replaced.wait()
                return False
        return True

    def replace(self) -> None:
        """Wake every caller waiting here: a new limit applies."""
        if self._replaced is not None:
            self._replaced.set()


class _Limits:
    """The rate limiter and concurrency cap of one task in one worker."""

    __slots__ = ("_rate", "_semaphore")

    def __init__(self, rate: RateLimit | None, max_concurrency: int | None) -> None:
        self._rate = RateLimiter(rate) if rate is not None else None
        self._semaphore = asyncio.Semaphore(max_concurrency) if max_concurrency else None

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait for the task's turn under both limits, and hold it while running."""
        semaphore = self._semaphore
        if semaphore is not None:
            await semaphore.acquire()
        try:
            while (rate := self._rate) is not None and not await rate.acquire():
                pass  # replaced while it waited (aq control rate-limit): ask the new one
            yield
        finally:
            if semaphore is not None:
                semaphore.release()


class _NoLimits:
    __slots__ = ()

    def slot(self) -> contextlib.nullcontext[None]:
        return _NULL


_NULL: contextlib.nullcontext[None] = contextlib.nullcontext()
_NONE = _NoLimits()


class TaskLimits:
    """Per-task limits of one worker, created on first use of each task;
    ``default_rate`` is the rate limit of the tasks that set none
    (``--default-rate-limit``)."""

    def __init__(self, default_rate: RateLimit | None = None) -> None:
        self.default_rate = default_rate
        self._by_task: dict[str, _Limits | _NoLimits] = {}
        #: Rate limits set at run time, by task name (None: no rate limit).
        self._rates: dict[str, RateLimit | None] = {}

    def get(self, task: _BaseTask[Any, Any]) -> _Limits | _NoLimits:
        limits = self._by_task.get(task.name)
        if limits is None:
            config = task.config
            rate = self.rate(task)
            if rate is None and config.max_concurrency is None:
                limits = _NONE
            else:
                limits = _Limits(rate, config.max_concurrency)
            self._by_task[task.name] = limits
        return limits

    def rate(self, task: _BaseTask[Any, Any]) -> RateLimit | None:
        """The rate limit in force for ``task`` here."""
        if task.name in self._rates:
            return self._rates[task.name]
        return task.config.rate_limit or self.default_rate

    def set_rate(self, task: _BaseTask[Any, Any], limit: RateLimit | None) -> None:
        """Limit ``task`` to ``limit`` from now on (``None``: no rate limit)."""
        self._rates[task.name] = limit
        limits = self._by_task.get(task.name)
        if isinstance(limits, _Limits):  # keep its concurrency cap, and who holds it
            old, limits._rate = limits._rate, RateLimiter(limit) if limit is not None else None
            if old is not None:
                old.replace()
        else:
            self._by_task.pop(task.name, None)  # built again on its next use

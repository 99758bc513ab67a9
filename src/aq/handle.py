"""``TaskHandle``: what ``kiq()`` returns, the producer's view of one task.

A handle waits for what the worker pushes back to this producer's inbox: the
outcome (:meth:`TaskHandle.result`), progress reports (:meth:`TaskHandle.progress`
or :meth:`TaskHandle.on_progress`) and, for async-generator tasks, the stream of
items (:meth:`StreamHandle.stream`). It can also cancel the task wherever it
runs. Dropping a handle is safe: nothing is kept for an unawaited task.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from aq.coerce import Converter
from aq.errors import (
    ResultTimeout,
    SerializationError,
)
from aq.message import remote_error
from aq.replies import ProgressCallback, ResultWaiter

if TYPE_CHECKING:
    from aq.broker import Broker

__all__ = ["StreamHandle", "TaskHandle"]

R = TypeVar("R")
Y = TypeVar("Y")

_CONVERSION_ERRORS = (TypeError, ValueError, AttributeError, KeyError, ArithmeticError)


class TaskHandle(Generic[R]):
    """A sent task. ``await handle.result()`` gives its return value, typed ``R``.

    Attributes:
        id: the task id; a later request can use it with ``broker.cancel(id)``.
        task_name: the registered name of the task.
    """

    __slots__ = ("_broker", "_convert", "_waiter", "id", "task_name")

    def __init__(
        self,
        broker: Broker,
        task_id: str,
        task_name: str,
        waiter: ResultWaiter,
        convert: Converter | None = None,
    ) -> None:
        self._broker = broker
        self.id = task_id
        self.task_name = task_name
        self._waiter = waiter
        self._convert = convert

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.task_name} id={self.id}>"

    @property
    def done(self) -> bool:
        """Whether the outcome has arrived."""
        return self._waiter.outcome.done()

    async def result(self, timeout: float | None = None) -> R:
        """Wait for the task's return value.

        Args:
            timeout: seconds to wait; ``None`` waits as long as it takes.

        Raises:
            aq.ResultTimeout: no outcome arrived within ``timeout``.
            aq.TaskFailed: the task raised (``TaskTimeout`` and ``TaskCancelled``
                are subclasses); the remote type, message and traceback are on it.
        """
        outcome = self._waiter.outcome
        if not outcome.done():
            try:
                if timeout is None:
                    await asyncio.shield(outcome)
                else:
                    async with asyncio.timeout(timeout):
                        await asyncio.shield(outcome)
            except TimeoutError:
                raise ResultTimeout(
                    f"no result for task {self.task_name} ({self.id}) within {timeout} s"
                ) from None
        status, payload = outcome.result()
        if status == "error":
            raise remote_error(self.id, payload)
        if self._convert is not None and payload is not None:
            try:
                payload = self._convert(payload)
            except _CONVERSION_ERRORS as exc:
                raise self._mismatch("result", exc) from exc
        return payload  # type: ignore[no-any-return]

    def _mismatch(self, what: str, exc: Exception) -> SerializationError:
        return SerializationError(
            f"{what} of {self.task_name} does not match its return annotation: {exc}"
        )

    async def progress(self) -> AsyncIterator[Any]:
        """Yield each progress report in order, ending when the task finishes."""
        waiter = self._waiter
        while True:
            while waiter.progress:
                yield waiter.progress.popleft()
            if waiter.outcome.done():
                return
            await waiter.wait_changed()

    def on_progress(self, callback: ProgressCallback) -> None:
        """Call ``callback(value)`` for every progress report from now on."""
        self._waiter.callbacks.append(callback)

    async def cancel(self) -> None:
        """Stop the task: a queued task will not run; a running one is cancelled.

        The handle's result then raises :class:`aq.TaskCancelled` (unless the
        task finished first).
        """
        await self._broker.cancel(self.id)


class StreamHandle(TaskHandle[None], Generic[Y]):
    """The handle of an async-generator task: ``async for item in handle.stream()``."""

    __slots__ = ()

    async def stream(self) -> AsyncIterator[Y]:
        """Yield the items the task yields, in order, once each.

        Raises:
            aq.TaskFailed: the generator raised; items before the failure were yielded.
        """
        waiter = self._waiter
        convert = self._convert
        while True:
            while waiter.items:
                item = waiter.items.popleft()
                if convert is not None and item is not None:
                    try:
                        item = convert(item)
                    except _CONVERSION_ERRORS as exc:
                        raise self._mismatch("an item", exc) from exc
                yield item
            if waiter.outcome.done():
                status, payload = waiter.outcome.result()
                if waiter.items:
                    continue
                if status == "error":
                    raise remote_error(self.id, payload)
                return
            await waiter.wait_changed()

"""What a running task can learn about itself: ``aq.context()``.

The worker sets a :class:`TaskContext` in a context variable before it calls
the task function, so code anywhere below the task (helpers, libraries) can
read the task id, attempt number and headers, reach what the broker's start-up
hooks made (``state``), and report progress to the producer without having
them passed in.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aq.errors import AQError
from aq.lifecycle import State

__all__ = ["TaskContext", "context"]


class TaskContext:
    """The running task's identity and its line back to the producer.

    Attributes:
        task_id: the id shared with the producer's ``TaskHandle``.
        task_name: the registered name of the task.
        queue: the queue the message came from.
        attempt: 1 on the first run, 2 on the first retry, and so on.
        max_attempts: attempts allowed in all (``retries + 1``); ``None``
            without limit (``retries=None``).
        headers: the message headers set with ``task.options(headers=...)``.
        state: the broker's :class:`aq.State` (``broker.state``): what its
            start-up hooks set and its resources, by name. The same object for
            every task; its attributes are typed ``Any`` (a
            :class:`aq.Resource`'s ``get()`` is the typed path).
    """

    __slots__ = (
        "_send_progress",
        "attempt",
        "headers",
        "max_attempts",
        "queue",
        "state",
        "task_id",
        "task_name",
    )

    def __init__(
        self,
        task_id: str,
        task_name: str,
        queue: str,
        attempt: int,
        max_attempts: int | None,
        headers: Mapping[str, Any],
        send_progress: Callable[[Any], Awaitable[None]],
        state: State,
    ) -> None:
        self.task_id = task_id
        self.task_name = task_name
        self.queue = queue
        self.attempt = attempt
        self.max_attempts = max_attempts
        self.headers = headers
        self._send_progress = send_progress
        self.state = state

    async def report_progress(self, value: Any) -> None:
        """Send ``value`` (any JSON-serialisable data) to the producer awaiting this task.

        Raises:
            aq.SerializationError: ``value`` cannot be encoded.
        """
        await self._send_progress(value)


_current: contextvars.ContextVar[TaskContext] = contextvars.ContextVar("aq_task_context")


def context() -> TaskContext:
    """The context of the task running in the current asyncio task.

    Sync tasks can read it too (their thread gets a copy), but ``report_progress``
    is a coroutine and works only in async tasks.

    Raises:
        aq.AQError: called outside a task executed by an aq worker.
    """
    try:
        return _current.get()
    except LookupError:
        raise AQError("aq.context() is only available inside a task run by a worker") from None


def set_context(ctx: TaskContext) -> contextvars.Token[TaskContext]:
    """Make ``ctx`` current; the worker calls this around each task."""
    return _current.set(ctx)

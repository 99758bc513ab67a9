"""Hooks that features and users plug into the life of a message.

A :class:`Middleware` sees a task message on the producer side (before and
after it is published) and on the worker side (before and after it runs, and
when its outcome is sent). ``before_*`` hooks run in the order the middleware
was added; ``after_*`` hooks and ``on_result`` run in reverse, so each
middleware wraps the ones added after it. A hook that raises before publishing
aborts the ``kiq()``; on the worker, an exception from ``before_execute`` fails
the attempt like an exception from the task itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from aq.message import TaskMessage

__all__ = ["Middleware", "Outcome"]


@dataclass(slots=True)
class Outcome:
    """What one attempt of a task came to.

    Attributes:
        status: ``"success"``, ``"retry"``, ``"failure"`` (dead-lettered) or
            ``"cancelled"``.
        value: the return value on success.
        error: the exception on retry, failure or cancellation.
        duration: seconds the attempt ran.
    """

    status: Literal["success", "retry", "failure", "cancelled"]
    value: Any = None
    error: BaseException | None = None
    duration: float = 0.0


class Middleware:
    """Base class: override the hooks you need; each default does nothing."""

    async def before_publish(self, message: TaskMessage) -> None:
        """Called in ``kiq()`` before the message is encoded; may edit ``message.headers``."""

    async def after_publish(self, message: TaskMessage) -> None:
        """Called in ``kiq()`` once the broker has the message."""

    async def before_execute(self, message: TaskMessage) -> None:
        """Called in the worker just before the task function runs."""

    async def after_execute(self, message: TaskMessage, outcome: Outcome) -> None:
        """Called in the worker after each attempt, whatever its outcome."""

    async def on_result(self, message: TaskMessage, outcome: Outcome) -> None:
        """Called in the worker once the final outcome has been handed off."""

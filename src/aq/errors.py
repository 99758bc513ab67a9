"""The one error tree of aq.

Every exception aq raises derives from :class:`AQError`; library exceptions
(orjson, redis, aio-pika) are translated into this tree where they are met::

    AQError
    ├── ConfigurationError      a bad URL or option, found at start-up
    ├── StartupFailed           a start-up hook or resource raised (@broker.on_startup)
    ├── SerializationError      a value that cannot cross the wire, found at kiq()
    ├── MessageDecodeError      bytes off the wire that are not a valid aq message
    │   └── UntrustedMessage    one without a valid signature, where one is required
    ├── UnknownTask             a message naming a task the worker does not know
    ├── BrokerError             the transport failed
    │   ├── BrokerUnavailable   the broker could not be reached in time
    │   └── ConnectionLost      an established connection dropped
    ├── ResultTimeout           handle.result(timeout=...) ran out of time
    ├── ResultNotFound          no stored result for a task id
    ├── Retry                   raised inside a task to ask for another attempt
    ├── SoftTimeLimit           raised inside a task at its soft time limit
    └── TaskFailed              the task ran and did not succeed
        ├── TaskTimeout         it ran past its time limit
        ├── TaskCancelled       it was cancelled by handle.cancel()
        ├── TaskExpired         its ``expires`` time passed before it ran
        └── WorkerCrashed       it crashed its worker process too often
"""

from __future__ import annotations

import asyncio
import enum
import math
from typing import Final, Literal

__all__ = [
    "AQError",
    "BrokerError",
    "BrokerUnavailable",
    "ConfigurationError",
    "ConnectionLost",
    "MessageDecodeError",
    "ResultNotFound",
    "ResultTimeout",
    "Retry",
    "SerializationError",
    "SoftTimeLimit",
    "StartupFailed",
    "TaskCancelled",
    "TaskExpired",
    "TaskFailed",
    "TaskTimeout",
    "UnknownTask",
    "UntrustedMessage",
    "WorkerCrashed",
]


class AQError(Exception):
    """Base class of every error aq raises."""


class ConfigurationError(AQError):
    """A broker URL, task option or worker option is invalid."""


class StartupFailed(AQError):
    """A start-up hook (``@broker.on_startup``) or resource (``@broker.resource``)
    raised, so the worker did not start (``aq worker`` exits with status 4) or
    ``broker.startup()`` did not finish. What had opened before it was closed.
    The hook's own exception is the ``__cause__``.

    Attributes:
        hook: the qualified name of the function that raised (``app.tasks.open_db``).
        kind: ``"start-up hook"`` or ``"resource"``.
        reason: the error, as ``Type: message``.
    """

    def __init__(self, kind: str, hook: str, error: BaseException) -> None:
        self.kind = kind
        self.hook = hook
        self.reason = f"{type(error).__name__}: {error}"
        super().__init__(f"{kind} {hook} failed: {self.reason}")


class SerializationError(AQError, TypeError):
    """A value cannot be encoded for the wire (or decoded into its declared type)."""


class MessageDecodeError(AQError, ValueError):
    """Bytes received from the broker are not a valid aq message."""


class UntrustedMessage(MessageDecodeError):
    """A message that is unsigned, signed with a key id this process does not
    know, or whose signature does not match its bytes, received by a process
    that requires signatures (``aq.Broker(signing_keys=...)``; docs/security.md).
    Its text never holds a key."""


class UnknownTask(AQError, LookupError):
    """A message names a task that is not registered with the broker."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no task named {name!r} is registered with this broker")
        self.name = name


class BrokerError(AQError):
    """The transport failed to publish, consume or reply."""


class BrokerUnavailable(BrokerError):
    """The broker could not be reached within the allowed time."""


class ConnectionLost(BrokerError):
    """An established connection to the broker dropped."""


class ResultTimeout(AQError, TimeoutError):
    """No outcome arrived within the timeout given to ``TaskHandle.result``."""


class ResultNotFound(AQError, LookupError):
    """``broker.get_result(task_id)`` found nothing: the task has not finished, its
    result expired, or the broker was created without ``result_ttl``."""


class _Keep(enum.Enum):
    KEEP = "keep"


#: ``aq.Retry(retries=...)`` left out: the task's own retry budget applies.
KEEP: Final = _Keep.KEEP


class Retry(AQError):
    """Raise inside a task to request another attempt; it overrides the task's
    retry policy for this attempt (``retry_on`` and ``dont_retry_on`` do not
    apply to it).

    Args:
        delay: seconds (0 or more, finite) to wait before the next attempt;
            ``None`` uses the task's backoff policy.
        reason: a short text kept in the logs and, once attempts run out,
            in the dead-letter reason.
        retries: how many retries the task may have in all, from now on in
            place of its ``retries`` option (``None``: without limit). Left
            out, the task's own budget applies: with it spent, the task fails.

    Raises:
        ConfigurationError: ``delay`` is negative, NaN, infinite or not a
            number, or ``retries`` is not a whole number of at least 0 or None.
    """

    def __init__(
        self,
        delay: float | None = None,
        reason: str = "retry requested",
        *,
        retries: int | Literal[_Keep.KEEP] | None = KEEP,
    ) -> None:
        if delay is not None and (
            isinstance(delay, bool)
            or not isinstance(delay, int | float)
            or not math.isfinite(delay)
            or delay < 0
        ):
            raise ConfigurationError(
                f"aq.Retry delay must be a finite number of seconds, 0 or more, not {delay!r}"
            )
        if (
            retries is not KEEP
            and retries is not None
            and (not isinstance(retries, int) or isinstance(retries, bool) or retries < 0)
        ):
            raise ConfigurationError(
                f"aq.Retry retries must be a whole number, 0 or more, or None, not {retries!r}"
            )
        super().__init__(reason)
        self.delay = delay
        self.reason = reason
        self.retries = retries


class SoftTimeLimit(AQError, asyncio.CancelledError):
    """Raised inside a task's coroutine, where it awaits, once it has run for its
    ``soft_timeout``: it may clean up and return, or raise. Its hard ``timeout``
    still applies. Left unhandled, it fails the attempt like any exception (and
    is retried if the task's retry policy says so).

    It is an ``Exception`` (``except Exception`` catches it, as Celery's
    ``SoftTimeLimitExceeded``) and an ``asyncio.CancelledError`` too, since it
    takes the place of one at the ``await`` where the task stands: asyncio's own
    clean-up on cancellation (``Lock`` and ``Semaphore`` waiters, ``wait_for``,
    ``TaskGroup``) runs for it as for any cancellation."""


class TaskFailed(AQError):
    """The task raised; carries the remote exception's type, message and traceback.

    Attributes:
        task_id: the id of the failed task.
        remote_type: the name of the exception raised in the worker: bare for
            builtins (``"ValueError"``), qualified otherwise (``"myapp.errors.Declined"``).
        remote_message: ``str()`` of that exception.
        remote_traceback: the formatted traceback text from the worker.
        step: in a workflow, which step failed: its place and task, such as
            ``"chain step 2 (app.resize)"``; ``None`` for a task sent alone.
    """

    def __init__(
        self,
        task_id: str,
        remote_type: str,
        remote_message: str,
        remote_traceback: str = "",
        step: str | None = None,
    ) -> None:
        where = f"task {task_id}" if step is None else f"{step} (task {task_id})"
        super().__init__(f"{where} failed: {remote_type}: {remote_message}")
        self.task_id = task_id
        self.remote_type = remote_type
        self.remote_message = remote_message
        self.remote_traceback = remote_traceback
        self.step = step


class TaskTimeout(TaskFailed):
    """The task ran longer than its ``timeout`` and was cancelled."""


class TaskCancelled(TaskFailed):
    """The task was cancelled before it finished."""


class TaskExpired(TaskFailed):
    """The task's ``expires`` time passed before a worker started it."""


class WorkerCrashed(TaskFailed):
    """The task's worker process died while running it, again and again, the last
    times while it ran alone: it was dead-lettered as the cause."""

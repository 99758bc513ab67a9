"""A task's time limits: the hard ``timeout`` and the soft ``soft_timeout``.

The hard limit cancels the attempt: :func:`run_with_deadline` runs it under
``asyncio.timeout`` and turns the expiry into :class:`aq.TaskTimeout`, while a
``TimeoutError`` the task raises itself stays an ordinary failure.

The soft limit warns the task instead: at the deadline :class:`aq.SoftTimeLimit`
is raised inside the coroutine, at the ``await`` where it stands, so it can
clean up, return what it has, or raise. :class:`SoftLimited` drives the
coroutine step by step as ``await`` would (each future it yields goes to the
asyncio task unchanged), arms a timer, and at the deadline cancels the asyncio
task; the ``CancelledError`` that comes back at the suspended ``await`` is
taken back (``Task.uncancel``) and replaced by ``SoftTimeLimit`` thrown into
the coroutine. A cancellation by anyone else (the hard limit, a shutdown,
``handle.cancel()``) that arrives with it passes through unchanged. Only
coroutines are limited so: a thread (a plain ``def`` task) cannot be
interrupted where it stands, and such tasks may not set ``soft_timeout``.

Celery's soft limit is a signal (SIGUSR1) that raises in whatever the child
process is doing, so it reaches blocking code too but only in its own process
and only one task at a time; here thousands of tasks share one thread, so the
limit is delivered to exactly one coroutine, and only where it awaits: a task
stuck in a CPU-bound loop never sees it (nor, for the same reason, its hard
limit until it yields).

Before a worker starts, :func:`check_hold_limit` holds the hard limits against
the broker's own: a task allowed to run longer than RabbitMQ lets a delivery
stay unacknowledged would be taken back and run again while it still runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Coroutine, Generator, Sequence
from typing import Any, Generic, TypeVar

from aq.broker import Broker
from aq.errors import ConfigurationError, SoftTimeLimit, TaskTimeout
from aq.logs import event
from aq.message import outcome_error

__all__ = [
    "SoftDeadline",
    "SoftLimited",
    "check_hold_limit",
    "check_soft_limits",
    "run_with_deadline",
    "soft_stream",
]

log = logging.getLogger("aq.worker")

T = TypeVar("T")


async def run_with_deadline(task_id: str, running: Awaitable[T], timeout: float) -> T:
    """Await ``running`` for at most ``timeout`` seconds.

    Raises:
        aq.TaskTimeout: it ran longer (``running`` was cancelled).
    """
    deadline = asyncio.timeout(timeout)
    try:
        async with deadline:
            return await running
    except TimeoutError:
        if not deadline.expired():
            raise  # the task's own TimeoutError: an ordinary failure
        raise outcome_error(TaskTimeout, task_id, f"ran longer than {timeout:g} s") from None


class SoftDeadline:
    """A task's soft time limit: when it falls due (the event loop's clock), and
    whether it has been delivered (it is, once)."""

    __slots__ = ("at", "delivered", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = asyncio.get_running_loop().time() + seconds
        self.delivered = False

    @property
    def due(self) -> bool:
        """Whether it has passed and was not delivered yet."""
        return not self.delivered and asyncio.get_running_loop().time() >= self.at

    def error(self) -> SoftTimeLimit:
        self.delivered = True
        return SoftTimeLimit(f"soft time limit of {self.seconds:g} s exceeded")


class SoftLimited(Generic[T]):
    """``await SoftLimited(coro, deadline)``: ``await coro``, with
    :class:`aq.SoftTimeLimit` raised inside it if ``deadline`` (or that many
    seconds from now) falls due meanwhile (see the module docstring). Awaited
    once, by the asyncio task that runs it; several may share one deadline (the
    steps of a stream), which is delivered once."""

    __slots__ = ("_coro", "_deadline")

    def __init__(self, coro: Coroutine[Any, Any, T], deadline: SoftDeadline | float) -> None:
        self._coro = coro
        self._deadline = deadline

    def __await__(self) -> Generator[Any, Any, T]:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("SoftLimited must be awaited inside an asyncio task")
        deadline, coro = self._deadline, self._coro
        if not isinstance(deadline, SoftDeadline):
            deadline = SoftDeadline(deadline)
        cancelling = task.cancelling()  # cancels already asked for are not ours
        fired = False

        def fire() -> None:
            nonlocal fired
            fired = True
            task.cancel()

        timer = None
        if not deadline.delivered:
            timer = asyncio.get_running_loop().call_at(deadline.at, fire)
        value: Any = None
        error: BaseException | None = None
        try:
            while True:
                try:
                    yielded = coro.send(value) if error is None else coro.throw(error)
                except StopIteration as stop:
                    result: T = stop.value
                    return result
                try:
                    value, error = (yield yielded), None
                except asyncio.CancelledError as cancelled:
                    value, error = None, cancelled
                    if fired:
                        fired = False  # delivered once; later cancels are others'
                        if task.uncancel() <= cancelling:  # ours alone: the soft limit
                            error = deadline.error()
                except GeneratorExit:
                    coro.close()
                    raise
                except BaseException as exc:  # thrown in by whoever drives us: pass it on
                    value, error = None, exc
        finally:
            if timer is not None:
                timer.cancel()


async def soft_stream(stream: AsyncGenerator[T, None], deadline: SoftDeadline) -> AsyncIterator[T]:
    """The items of ``stream``, with its soft time limit raised inside it: while it
    computes an item (:class:`SoftLimited`), or at the ``yield`` where it waits if
    the limit fell due while its consumer (aq, sending the item on) had it."""
    while True:
        step = stream.athrow(deadline.error()) if deadline.due else stream.__anext__()
        try:
            item = await SoftLimited(step, deadline)
        except StopAsyncIteration:
            return
        yield item


def check_soft_limits(broker: Broker, queues: Sequence[str], default_timeout: float | None) -> None:
    """Refuse a worker whose ``--default-timeout`` would cut short, before it
    ever fires, the soft time limit of a task that sets no timeout of its own.

    Raises:
        aq.ConfigurationError: naming the task and both limits.
    """
    if default_timeout is None:
        return
    for task in broker.tasks.values():
        config = task.config
        soft = config.soft_timeout
        unreachable = soft is not None and soft >= default_timeout
        if unreachable and config.queue in queues and config.timeout is None:
            raise ConfigurationError(
                f"task {task.name} has soft_timeout={soft:g} s, not shorter than "
                f"--default-timeout={default_timeout:g} s, so it would never fire: "
                "give the task a timeout of its own, or raise --default-timeout"
            )


def check_hold_limit(
    broker: Broker, queues: Sequence[str], default_timeout: float | None = None
) -> None:
    """Refuse tasks whose timeout (or ``default_timeout``, for those that set
    none) outlasts the broker's hold on a delivery; warn of those without a
    timeout. A task still running when the broker takes its delivery back
    (RabbitMQ's ``consumer_timeout``) is run again, and again."""
    limit = broker.transport.max_hold
    if limit is None:
        return
    tasks = [t for t in broker.tasks.values() if t.config.queue in queues]
    for task in tasks:
        timeout = task.config.timeout or default_timeout
        if timeout is not None and timeout > limit:
            setting = "timeout" if task.config.timeout else "--default-timeout"
            raise ConfigurationError(
                f"task {task.name} has {setting}={timeout:g} s, longer than the {limit:g} s "
                "RabbitMQ lets a delivery stay unacknowledged (consumer_timeout): it would "
                "close the channel and run the task again while it still runs, in a loop. "
                "Lower the task's timeout, or raise consumer_timeout in rabbitmq.conf "
                "(in milliseconds) and declare it in the broker URL (?consumer_timeout=, "
                "in seconds)"
            )
    unbounded = [] if default_timeout else sorted(t.name for t in tasks if not t.config.timeout)
    if unbounded:
        event(
            log,
            logging.WARNING,
            "worker.no_timeout",
            tasks=",".join(unbounded),
            limit=limit,
            note="a run longer than the broker's consumer_timeout is taken back and run "
            "again; give these tasks a timeout",
        )

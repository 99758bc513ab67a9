"""Task objects: what ``@broker.task`` turns a function into.

A task keeps its function callable in-process (``await add(1, 2)``) and adds
``kiq()``, which sends the call to a worker and returns a typed handle. The
ParamSpec ``P`` carries the function's signature to ``kiq`` so that a wrong
argument is a type error, and the handle carries the return type ``R`` to
``await handle.result()``. ``options()`` returns a :class:`TaskCall` with
per-call settings (delay, priority, queue, id, headers) and the same ``kiq``.
"""

from __future__ import annotations

import datetime as dt
import inspect
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Generic,
    Literal,
    Never,
    ParamSpec,
    TypeVar,
    overload,
)

from aq.coerce import ArgumentConverter, Converter, return_converter
from aq.compression import check_compression
from aq.errors import ConfigurationError, SerializationError
from aq.handle import StreamHandle, TaskHandle
from aq.message import TaskMessage, new_id
from aq.options import TaskConfig, check_priority, check_seconds
from aq.replies import ResultWaiter
from aq.unique import default_key, send_unique
from aq.workflow.canvas import Canvas, Group, Signature, callbacks
from aq.workflow.items import Items

if TYPE_CHECKING:
    from aq.broker import Broker

__all__ = ["StreamTask", "SyncTask", "Task", "TaskCall", "TaskConfig"]

P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R")
R2 = TypeVar("R2")
T = TypeVar("T")
Y = TypeVar("Y")
H = TypeVar("H", bound=TaskHandle[Any])

TaskKind = Literal["async", "sync", "stream"]


@dataclass(frozen=True, slots=True)
class SendOptions:
    """Per-call settings given to ``task.options()``.

    Relative times (``delay``, ``expires_in``) are kept relative and turned into
    UNIX times at each ``kiq()``, so a ``TaskCall`` can be reused.
    """

    delay: float | None = None
    eta: float | None = None
    priority: int | None = None
    queue: str | None = None
    task_id: str | None = None
    headers: Mapping[str, Any] | None = None
    expires_in: float | None = None
    expires_at: float | None = None
    timeout: float | None = None
    unique_key: str | None = None
    unique_for: float | None = None
    compression: str | None = None
    link: tuple[Canvas[Any, Any], ...] = ()
    link_error: tuple[Canvas[Any, Any], ...] = ()

    def due(self, now: float) -> float | None:
        return now + self.delay if self.delay else self.eta

    def expiry(self, now: float) -> float | None:
        return now + self.expires_in if self.expires_in is not None else self.expires_at


_DEFAULT_OPTIONS = SendOptions()


def _timestamp(value: dt.datetime) -> float:
    if value.tzinfo is None:
        raise ConfigurationError(
            "naive datetimes are ambiguous: pass a timezone-aware datetime "
            "(for example datetime.now(timezone.utc))"
        )
    return value.timestamp()


class _BaseTask(Generic[P, H]):
    """The machinery shared by every kind of task; see the module docstring."""

    kind: TaskKind

    def __init__(self, broker: Broker, fn: Callable[P, Any], config: TaskConfig) -> None:
        self.broker = broker
        self.fn = fn
        self.config = config
        self.name = config.name
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn
        self._signature = inspect.signature(fn)
        self._arguments: ArgumentConverter | None = None
        self._returns: Converter | Literal[False] | None = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} queue={self.config.queue}>"

    @property
    def argument_converter(self) -> ArgumentConverter:
        """Converts decoded JSON arguments to the function's annotations (built on first use)."""
        if self._arguments is None:
            self._arguments = ArgumentConverter(self.fn)
        return self._arguments

    @property
    def return_converter(self) -> Converter | None:
        if self._returns is False:
            self._returns = return_converter(self.fn)
        return self._returns

    def parameter_name(self, position: int | str) -> str:
        """The parameter name for a positional index or keyword (for error messages)."""
        if isinstance(position, str):
            return position
        params = list(self._signature.parameters.values())
        if position < len(params) and params[position].kind in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            return params[position].name
        return f"#{position}"

    def options(
        self,
        *,
        delay: float | None = None,
        eta: dt.datetime | None = None,
        priority: int | None = None,
        queue: str | None = None,
        task_id: str | None = None,
        headers: Mapping[str, Any] | None = None,
        expires: float | dt.datetime | None = None,
        timeout: float | None = None,
        unique_key: str | None = None,
        unique_for: float | None = None,
        compression: str | None = None,
        link: Canvas[Any, Any] | Sequence[Canvas[Any, Any]] = (),
        link_error: Canvas[Any, Any] | Sequence[Canvas[Any, Any]] = (),
    ) -> TaskCall[P, H]:
        """Per-call settings; returns an object whose ``kiq`` sends with them.

        Args:
            delay: seconds from now before the task may run.
            eta: a timezone-aware datetime before which the task may not run.
            priority: 0 to 9, higher runs first (default: the task's).
            queue: send to this queue instead of the task's.
            task_id: use this id instead of a random one.
            headers: extra JSON-serialisable headers, readable in ``aq.context()``.
            expires: seconds from now, or a datetime, after which the task is
                dead-lettered instead of run.
            timeout: the task's time limit for this call, overriding its default.
            unique_key: while a task sent with this key is queued or running,
                ``kiq()`` returns a handle to it instead of sending another
                (see docs/limits.md); needs ``unique_for`` here or on the task.
            unique_for: seconds the key is held at most (it frees when the task
                ends), overriding the task's ``unique_for``.
            compression: ``"zstd"``, ``"zlib"`` or ``"none"`` for this call's
                message (default: the task's, else the broker's).
            link: signatures started with the result when the call succeeds
                (docs/workflows.md).
            link_error: signatures started with an :class:`aq.Failure` when it
                fails for good.

        Raises:
            aq.ConfigurationError: an option is out of range, both delay and eta
                given, or a unique key without ``unique_for``.
        """
        if delay is not None and eta is not None:
            raise ConfigurationError("give delay or eta, not both")
        if delay is not None and (not isinstance(delay, int | float) or delay < 0):
            raise ConfigurationError(
                f"delay must be a non-negative number of seconds, not {delay!r}"
            )
        if priority is not None:
            check_priority(priority)
        check_seconds("timeout", timeout)
        if task_id is not None and (not isinstance(task_id, str) or not task_id):
            raise ConfigurationError("task_id must be a non-empty string")
        if unique_key is not None and (not isinstance(unique_key, str) or not unique_key):
            raise ConfigurationError("unique_key must be a non-empty string")
        check_seconds("unique_for", unique_for)
        if (unique_key or unique_for) and self.kind == "stream":
            raise ConfigurationError(
                "unique_key and unique_for do not apply to async-generator tasks: callers "
                "that join a running one could not receive the items it already sent"
            )
        if unique_key is not None and unique_for is None and self.config.unique_for is None:
            raise ConfigurationError(
                f"unique_key needs unique_for: pass .options(unique_key=..., unique_for=SECONDS) "
                f"or @broker.task(unique_for=SECONDS) on {self.name!r}"
            )
        expires_in = expires_at = None
        if isinstance(expires, dt.datetime):
            expires_at = _timestamp(expires)
        elif expires is not None:
            expires_in = check_seconds("expires", expires)
        options = SendOptions(
            delay=delay,
            eta=_timestamp(eta) if eta is not None else None,
            priority=priority,
            queue=queue,
            task_id=task_id,
            headers=headers,
            expires_in=expires_in,
            expires_at=expires_at,
            timeout=timeout,
            unique_key=unique_key,
            unique_for=unique_for,
            compression=check_compression(compression),
            link=callbacks(link),
            link_error=callbacks(link_error),
        )
        if (options.link or options.link_error) and (self.kind == "stream" or unique_key):
            raise ConfigurationError(
                "link and link_error apply to plain calls: not to async-generator tasks, "
                "nor to unique calls"
            )
        return TaskCall(self, options)

    async def kiq(self, *args: P.args, **kwargs: P.kwargs) -> H:
        """Send the task to a worker; return once the broker has it.

        Raises:
            aq.SerializationError: an argument cannot be encoded (the message names it).
            aq.BrokerError: the broker did not accept the message.
        """
        return await self.send(args, kwargs, _DEFAULT_OPTIONS)

    @property
    def signature(self) -> inspect.Signature:
        """The function's signature, which calls and ``.s()`` are checked against."""
        return self._signature

    async def send(self, args: tuple[Any, ...], kwargs: dict[str, Any], options: SendOptions) -> H:
        config = self.config
        broker = self.broker
        if options.link or options.link_error:  # a workflow of one step, and callbacks
            return await Signature(self, args, kwargs, False, options).kiq()  # type: ignore[return-value]
        reply_to = broker.listening_address or await broker.reply_address()
        message = self.message(args, kwargs, options, reply_to)
        task_id = message.id
        unique_for = options.unique_for or config.unique_for
        if unique_for is not None:
            try:
                key = options.unique_key or default_key(broker, config.name, args, kwargs)
            except SerializationError:
                broker.encode(message, self)  # raises the error that names the argument
                raise
            task_id, waiter = await send_unique(broker, self, message, key, unique_for)
        else:
            waiter = await broker.publish(message, self)
        return self._handle(task_id, waiter)

    def message(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: SendOptions,
        reply_to: str | None,
    ) -> TaskMessage:
        """The message that calls this task with ``args``, ``kwargs`` and ``options``."""
        config = self.config
        task_id = options.task_id or new_id()
        now = time.time()
        return TaskMessage(
            id=task_id,
            task=config.name,
            queue=options.queue or config.queue,
            args=list(args),
            kwargs=kwargs,
            headers=dict(options.headers) if options.headers else {},
            max_attempts=config.max_attempts,
            priority=config.priority if options.priority is None else options.priority,
            eta=options.due(now) if options is not _DEFAULT_OPTIONS else None,
            expires=options.expiry(now) if options is not _DEFAULT_OPTIONS else None,
            timeout=options.timeout,
            reply_to=reply_to,
            correlation_id=task_id,
            created_at=now,
            compression=options.compression,
        )

    def _handle(self, task_id: str, waiter: ResultWaiter) -> H:
        raise NotImplementedError


class TaskCall(Generic[P, H]):
    """A task with per-call options bound; see :meth:`Task.options`."""

    __slots__ = ("_options", "_task")

    def __init__(self, task: _BaseTask[P, H], options: SendOptions) -> None:
        self._task = task
        self._options = options

    async def kiq(self, *args: P.args, **kwargs: P.kwargs) -> H:
        """Send the task with these options; see :meth:`Task.kiq`."""
        return await self._task.send(args, kwargs, self._options)


class _ValueTask(_BaseTask[P, TaskHandle[R]], Generic[P, R]):
    """What tasks with a return value share: handles typed ``R``, and the ways to
    make them steps of workflows that do not depend on how the function is called
    (``s`` and ``map`` do, and are typed in each subclass)."""

    def si(self, *args: P.args, **kwargs: P.kwargs) -> Signature[object, R]:
        """An immutable signature: this call in a workflow, ignoring the previous
        step's result (see :meth:`s`)."""
        return Signature(self, args, kwargs, True)

    def starmap(self, items: Iterable[Iterable[Any]]) -> Group[object, R]:
        """A group calling this task once per item, the item's values as its
        arguments; items are read as the group is sent (not type-checked)."""
        return Group(source=Items(self, items, "starmap"))

    def chunks(self, items: Iterable[Iterable[Any]], n: int) -> Group[object, list[R]]:
        """A group of messages each calling this task for ``n`` items in turn (the
        item's values as its arguments); its result is one list per chunk."""
        return Group(source=Items(self, items, "chunks", n))

    async def kiq_many(self, calls: Iterable[Signature[Any, R]]) -> list[TaskHandle[R]]:
        """Send many calls (``[task.s(...), ...]``) in bulk; their handles, in order.

        Raises:
            aq.ConfigurationError: a call is not a complete call of this task.
            aq.SerializationError: an argument cannot be encoded; nothing was sent.
            aq.BrokerError: the broker did not accept a message.
        """
        from aq.workflow.bulk import send_many

        return await send_many(self, calls)

    def _handle(self, task_id: str, waiter: ResultWaiter) -> TaskHandle[R]:
        return TaskHandle(self.broker, task_id, self.name, waiter, self.return_converter)


class Task(_ValueTask[P, R], Generic[P, R]):
    """A coroutine-function task. Calling it runs the function in-process."""

    kind: TaskKind = "async"

    def __init__(
        self, broker: Broker, fn: Callable[P, Coroutine[Any, Any, R]], config: TaskConfig
    ) -> None:
        super().__init__(broker, fn, config)
        self._fn = fn

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
        return self._fn(*args, **kwargs)

    @overload
    def s(
        self: Callable[Concatenate[T, P2], Coroutine[Any, Any, R2]],
        *args: P2.args,
        **kwargs: P2.kwargs,
    ) -> Signature[T, R2]: ...
    @overload
    def s(self, *args: P.args, **kwargs: P.kwargs) -> Signature[Never, R]: ...
    def s(self, *args: Any, **kwargs: Any) -> Signature[Any, Any]:
        """A signature: this call as a step of a workflow (docs/workflows.md).

        Leave out the first argument and the step takes the previous step's
        result there (``mul.s(10)`` in a chain calls ``mul(previous, 10)``); give
        every argument and it is a whole call, for a chain's first step or a
        group. Typed: mypy checks the arguments, and a chain whose step cannot
        take the previous result.

        Raises:
            aq.ConfigurationError: the arguments fit the function neither way.
        """
        return Signature(self, args, kwargs, False)

    def map(self: Callable[[T], Coroutine[Any, Any, R2]], items: Iterable[T]) -> Group[object, R2]:
        """A group calling this one-argument task once per item; items are read
        as the group is sent, so a generator of 100,000 is never all in memory."""
        return Group(source=Items(self, items, "map"))  # type: ignore[arg-type]


class SyncTask(_ValueTask[P, R], Generic[P, R]):
    """A plain-function task; workers run it in a thread pool."""

    kind: TaskKind = "sync"

    def __init__(self, broker: Broker, fn: Callable[P, R], config: TaskConfig) -> None:
        super().__init__(broker, fn, config)
        self._fn = fn

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._fn(*args, **kwargs)

    @overload
    def s(
        self: Callable[Concatenate[T, P2], R2],
        *args: P2.args,
        **kwargs: P2.kwargs,
    ) -> Signature[T, R2]: ...
    @overload
    def s(self, *args: P.args, **kwargs: P.kwargs) -> Signature[Never, R]: ...
    def s(self, *args: Any, **kwargs: Any) -> Signature[Any, Any]:
        """A signature: this call as a step of a workflow; see :meth:`Task.s`."""
        return Signature(self, args, kwargs, False)

    def map(self: Callable[[T], R2], items: Iterable[T]) -> Group[object, R2]:
        """A group calling this one-argument task once per item; see :meth:`Task.map`."""
        return Group(source=Items(self, items, "map"))  # type: ignore[arg-type]


class StreamTask(_BaseTask[P, StreamHandle[Y]], Generic[P, Y]):
    """An async-generator task; its items stream back to ``handle.stream()``."""

    kind: TaskKind = "stream"

    def __init__(
        self, broker: Broker, fn: Callable[P, AsyncIterator[Y]], config: TaskConfig
    ) -> None:
        super().__init__(broker, fn, config)
        self._fn = fn

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> AsyncIterator[Y]:
        return self._fn(*args, **kwargs)

    def _handle(self, task_id: str, waiter: ResultWaiter) -> StreamHandle[Y]:
        return StreamHandle(self.broker, task_id, self.name, waiter, self.return_converter)


AnyTask = _BaseTask[Any, Any]

"""``aq.Broker``: the application's handle on a message broker.

The broker holds the task registry (``@broker.task``), the codec, the
middleware stack, the transport chosen from the URL, and the producer's reply
listener. It publishes task messages for ``kiq()`` and broadcasts control
messages such as cancellation. Workers are built on a broker too
(:class:`aq.Worker`), so producer and worker code share one definition of the
tasks, and of the hooks and resources their processes start with
(:mod:`aq.lifecycle`).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, ParamSpec, Self, TypeVar, Unpack, overload

from aq.envelope import COMPRESS_ABOVE, Codec
from aq.errors import ConfigurationError, ResultNotFound
from aq.lifecycle import Lifecycle, State
from aq.message import (
    ControlMessage,
    TaskMessage,
    decode_reply,
    encode_control,
    remote_error,
    result_key,
)
from aq.middleware import Middleware
from aq.monitor.emitter import EventEmitter
from aq.monitor.inspect import Control, Inspect
from aq.monitor.status import TaskStatus, read_status
from aq.monitor.stream import EventStream
from aq.options import TaskOptions, check_seconds, task_config
from aq.publishing import Publisher
from aq.replies import ReplyListener, ResultWaiter, Waiter
from aq.scheduling.book import ScheduleBook
from aq.scheduling.entry import Schedule, ScheduleOptions
from aq.scheduling.spec import ScheduleSpec
from aq.serializer import Serializer, serializer_for
from aq.signing import Keyring
from aq.task import AnyTask, StreamTask, SyncTask, Task
from aq.transport import Admin, Store, Transport, create_store, transport_for
from aq.transport.kit import redact_url

__all__ = ["Broker", "TaskDecorator"]

P = ParamSpec("P")
R = TypeVar("R")
Y = TypeVar("Y")

DEFAULT_QUEUE = "default"
DEFAULT_MAX_MESSAGE_SIZE = 4 * 1024 * 1024
DEFAULT_WORKFLOW_TTL = 24 * 3600.0


class TaskDecorator:
    """The decorator returned by ``broker.task(...)`` with options."""

    def __init__(self, broker: Broker, options: TaskOptions) -> None:
        self._broker = broker
        self._options = options

    @overload
    def __call__(self, fn: Callable[P, AsyncIterator[Y]]) -> StreamTask[P, Y]: ...  # type: ignore[overload-overlap]
    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]]) -> Task[P, R]: ...  # type: ignore[overload-overlap]
    @overload
    def __call__(self, fn: Callable[P, R]) -> SyncTask[P, R]: ...
    def __call__(self, fn: Callable[..., Any]) -> AnyTask:
        return self._broker.register(fn, **self._options)


class Broker:
    """A connection to a message broker and the registry of tasks sent through it.

    Args:
        url: ``memory://``, ``redis://...`` or ``amqp://...``. The environment
            variable ``AQ_BROKER_URL``, when set, takes precedence, so one app
            module runs on memory in tests and on a real broker in production.
        serializer: what payloads are written with: ``"json"`` (the default,
            orjson), ``"msgpack"`` (the extra ``aq-tasks[msgpack]``), or a
            :class:`~aq.serializer.Serializer` object. Workers read every one of
            them, whatever their own (docs/protocol.md).
        signing_keys: key id -> secret: sign every message with HMAC-SHA256, and
            refuse messages that are unsigned or whose signature fails (they are
            dead-lettered, replies dropped). By default read from
            ``AQ_SIGNING_KEYS`` (``ID=SECRET,...``) if set. See docs/security.md.
        sign_with: the id of the key that signs (needed with several keys; by
            default ``AQ_SIGN_WITH``); the others are still accepted, which is
            how keys rotate.
        require_signatures: with keys, refuse unsigned messages (the default,
            or ``AQ_SIGNING_REQUIRED``); ``False`` accepts them while signing is
            rolled out to a running cluster.
        compression: ``"zstd"`` (the extra ``aq-tasks[zstd]``) or ``"zlib"``:
            compress payloads of ``compress_above`` bytes or more; a task or a
            call may choose otherwise.
        compress_above: the smallest payload compressed, in bytes (default 1024).
        middleware: hooks around publishing and executing; see :class:`aq.Middleware`.
        default_queue: the queue of tasks that name none.
        max_message_size: encoded messages larger than this many bytes are
            refused at ``kiq()``.
        result_ttl: when set, workers also keep each task's outcome for this many
            seconds, so :meth:`get_result` can look it up by id from any process.
        transport: the transport itself, instead of ``url``: a
            :class:`aq.transport.Transport` object (one of your own, say), or a URL.
        store: where state kept by key lives (the outcomes kept for
            ``result_ttl``, and the coordination state of features that need
            one): a :class:`aq.transport.Store` object or a URL (``redis://...``).
            By default the broker's own server, which works for ``memory://`` and
            Redis; RabbitMQ keeps no state by key, so an ``amqp://`` broker that
            needs a store is given one here.
        result_backend: the old name of ``store`` (a URL), still accepted.
        queue_type: RabbitMQ only: ``"classic"`` (the default) or ``"quorum"``
            (replicated queues for clusters); the same as ``?queue_type=`` in the URL.
        workflow_ttl: seconds the store keeps a workflow's group and chord state
            (the members' results a chord's body waits for) after its last
            change; default one day (docs/workflows.md).
        events: emit monitoring events (``task-sent`` here; a worker on this
            broker emits its own too): see docs/monitoring.md. ``aq worker
            --events`` turns them on for a worker.
        track_states: with ``result_ttl``, also keep each task's state
            (queued, running, retrying...) for :meth:`status`; ``False`` keeps
            only outcomes, saving a store write per task and per attempt.

    Raises:
        aq.ConfigurationError: no URL given or found, the URL is invalid, or a
            feature asked for needs a store and there is none.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        serializer: Serializer | str | None = None,
        signing_keys: Mapping[str, str | bytes] | None = None,
        sign_with: str | None = None,
        require_signatures: bool | None = None,
        compression: str | None = None,
        compress_above: int = COMPRESS_ABOVE,
        middleware: Iterable[Middleware] = (),
        default_queue: str = DEFAULT_QUEUE,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        result_ttl: float | None = None,
        transport: Transport | str | None = None,
        store: Store | str | None = None,
        result_backend: str | None = None,
        queue_type: str | None = None,
        workflow_ttl: float = DEFAULT_WORKFLOW_TTL,
        events: bool = False,
        track_states: bool = True,
    ) -> None:
        if max_message_size <= 0:
            raise ConfigurationError("max_message_size must be a positive number of bytes")
        if url is not None and transport is not None:
            raise ConfigurationError("pass the broker URL or transport=..., not both")
        if store is not None and result_backend is not None:
            raise ConfigurationError("pass store=... or its old name result_backend=..., not both")
        self.transport: Transport = transport_for(
            url if transport is None else transport, queue_type
        )
        self.url = self.transport.url
        #: Queue administration (stats, dead letters, purges) over the transport.
        self.admin: Admin = self.transport.admin
        given = store if store is not None else result_backend
        #: Where state is kept by key: the transport's own server unless ``store``
        #: names another; ``None`` if there is neither.
        self.store: Store | None = (
            create_store(given) if isinstance(given, str) else given or self.transport.store()
        )
        self._own_store = given is not None
        if serializer is None or isinstance(serializer, str):
            serializer = serializer_for(serializer or "json")
        #: Frames, signs, compresses and bounds every message (:mod:`aq.envelope`).
        self.codec = Codec(
            serializer,
            keyring=Keyring.configure(signing_keys, sign_with, require_signatures),
            compression=compression,
            compress_above=compress_above,
            max_size=max_message_size,
        )
        #: What payloads are written with (JSON unless ``serializer`` says).
        self.serializer: Serializer = self.codec.serializer
        self.middleware: list[Middleware] = list(middleware)
        self.default_queue = default_queue
        self.result_ttl = check_seconds("result_ttl", result_ttl)
        if result_ttl is not None:
            self.require_store("result_ttl")
        self.workflow_ttl = float(check_seconds("workflow_ttl", workflow_ttl) or workflow_ttl)
        self.track_states = track_states
        self.tasks: dict[str, AnyTask] = {}
        #: The schedules: defined in code, and kept in the store (docs/schedules.md).
        self.schedules = ScheduleBook(self)
        self._listener = ReplyListener(self.transport, self.codec)
        self._publisher = Publisher(self)
        #: Questions for live workers (``await broker.inspect.active()``).
        self.inspect = Inspect(self)
        #: Commands for live workers (``await broker.control.rate_limit(...)``).
        self.control = Control(self)
        self._started = False
        self._listening = False
        self._lock = asyncio.Lock()
        #: The start-up and shutdown hooks and resources (:mod:`aq.lifecycle`).
        self.lifecycle = Lifecycle()
        #: What hooks share with tasks, which read it as ``aq.context().state``.
        self.state: State = self.lifecycle.state
        #: ``@broker.on_startup``: run an async function when a worker starts
        #: (and in producers, with ``producer=True``); see :meth:`Lifecycle.on_startup`.
        self.on_startup = self.lifecycle.on_startup
        #: ``@broker.on_shutdown``: run an async function when a worker stops.
        self.on_shutdown = self.lifecycle.on_shutdown
        #: ``@broker.resource``: an async generator opened at start-up, closed at
        #: shutdown, read in tasks with ``.get()``; see :class:`aq.Resource`.
        self.resource = self.lifecycle.resource
        if events:
            self.enable_events()

    def __repr__(self) -> str:
        return f"<Broker {redact_url(self.url)} tasks={len(self.tasks)}>"

    @property
    def max_message_size(self) -> int:
        """The most bytes a message may have, framed or decompressed: larger
        ones are refused at ``kiq()`` and dead-lettered unread by workers."""
        return self.codec.max_size

    @max_message_size.setter
    def max_message_size(self, size: int) -> None:
        self.codec.max_size = size

    # -- lifecycle -----------------------------------------------------------------

    async def startup(self) -> None:
        """Connect to the broker, then run the start-up hooks and open the resources
        marked ``producer=True``, once however often it is called (docs/worker.md).

        Raises:
            aq.StartupFailed: a hook or resource raised; the broker is left as it
                was (disconnected if this call connected it).
        """
        connected = self._started
        await self.connect()
        try:
            await self.lifecycle.start(self, worker=False)
        except BaseException:
            if not connected:
                await self.shutdown()
            raise

    async def connect(self) -> None:
        """Connect to the broker, without running hooks: what ``kiq()`` does on
        first use, and what processes that only watch or schedule (``aq
        scheduler``, the dashboard) call."""
        async with self._lock:
            if not self._started:
                await self.transport.connect()
                if self.store is not None and self._own_store:
                    try:
                        await self.store.connect()
                    except BaseException:
                        await self.transport.close()
                        raise
                self._started = True
                if self._publisher.emitter is not None:
                    self._publisher.emitter.start()

    async def shutdown(self) -> None:
        """Run the shutdown side of what :meth:`startup` opened, stop listening for
        replies and close the connection."""
        await self.lifecycle.stop(self)
        async with self._lock:
            if self._publisher.emitter is not None:
                await self._publisher.emitter.close()
            if self._listening:
                await self._listener.stop()
                self._listening = False
            if self._started:
                await self.transport.close()
                if self.store is not None and self._own_store:
                    await self.store.close()
                self._started = False

    async def __aenter__(self) -> Self:
        await self.startup()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()

    def require_store(self, feature: str) -> Store:
        """The store, for ``feature``, which needs one.

        Raises:
            aq.ConfigurationError: there is no store; the message names the option.
        """
        if self.store is None:
            scheme = self.url.split(":", 1)[0]
            raise ConfigurationError(
                f"{feature} needs a store, and {scheme}:// keeps no state by key: pass "
                "aq.Broker(..., store='redis://...') to keep it in Redis"
            )
        return self.store

    @property
    def emitter(self) -> EventEmitter | None:
        """Where this process's monitoring events go, if they are on."""
        return self._publisher.emitter

    def subscribe_events(self) -> EventStream:
        """The cluster's events from now on (workers need ``--events``):
        ``async with broker.subscribe_events() as events: async for e in events``."""
        return EventStream(self)

    def enable_events(self) -> EventEmitter:
        """Turn monitoring events on (what ``events=True`` does); the emitter."""
        emitter = self._publisher.emitter
        if emitter is None:
            emitter = self._publisher.emitter = EventEmitter(self.transport, self.codec)
            if self._started:
                emitter.start()
        return emitter

    @property
    def tracks_states(self) -> bool:
        """Whether task states are kept (``result_ttl`` and ``track_states``)."""
        return self.result_ttl is not None and self.track_states

    async def status(self, task_id: str) -> TaskStatus:
        """What is known of task ``task_id``, from any process: queued, scheduled,
        running (where, since when, which attempt), retrying, succeeded, failed,
        dead-lettered, cancelled, or unknown. States are kept by brokers with
        ``result_ttl`` (docs/monitoring.md), for as long as results are.

        Raises:
            aq.ConfigurationError: there is no store to read states from, or
                this broker keeps none (no ``result_ttl``, or ``track_states=False``).
        """
        store = self.require_store("status()")
        if not self.tracks_states:
            raise ConfigurationError(
                "status() reads the task states that brokers with result_ttl keep: create "
                "the broker with aq.Broker(..., result_ttl=3600) (and track_states left on)"
            )
        await self.connect()
        return await read_status(store, self.codec, task_id)

    @property
    def is_started(self) -> bool:
        return self._started

    @property
    def listening_address(self) -> str | None:
        """The reply address if the listener runs already (the fast path of ``kiq``)."""
        return self._listener.address if self._listening else None

    def register_waiter(self, task_id: str) -> ResultWaiter:
        """The waiter this producer's replies for ``task_id`` go to (shared by
        every handle of that id in this process)."""
        return self._listener.register(task_id)

    def watch(self, correlation_id: str, waiter: Waiter) -> None:
        """Send this producer's replies for ``correlation_id`` to ``waiter`` (held
        weakly: it lives as long as the handle that holds it)."""
        self._listener.watch(correlation_id, waiter)

    async def reply_address(self) -> str:
        """This producer's reply address, starting the connection and listener if needed."""
        if not self._listening:
            await self.connect()
            async with self._lock:
                if not self._listening:
                    await self._listener.start()
                    self._listening = True
        return self._listener.address

    # -- tasks ---------------------------------------------------------------------

    @overload
    def task(self, fn: Callable[P, AsyncIterator[Y]], /) -> StreamTask[P, Y]: ...  # type: ignore[overload-overlap]
    @overload
    def task(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...  # type: ignore[overload-overlap]
    @overload
    def task(self, fn: Callable[P, R], /) -> SyncTask[P, R]: ...
    @overload
    def task(self, **options: Unpack[TaskOptions]) -> TaskDecorator: ...
    def task(  # type: ignore[misc]  # mypy misreads the keyword-only overload
        self, fn: Callable[..., Any] | None = None, /, **options: Unpack[TaskOptions]
    ) -> Any:
        """Register a function as a task: ``@broker.task`` or ``@broker.task(...)``.

        The options are those of :class:`aq.options.TaskOptions`: ``name``,
        ``queue``, ``timeout``, ``retries``, ``retry_backoff``,
        ``retry_backoff_max``, ``rate_limit``, ``max_concurrency``, ``priority``,
        ``global_rate_limit``, ``global_max_concurrency``, ``limit_key``,
        ``unique_for`` and ``schedule``.

        Raises:
            aq.ConfigurationError: an option is invalid, the name is taken, or an
                option needs a store (the global limits, ``unique_for``) and the
                broker has none.
        """
        if fn is not None:
            return self.register(fn, **options)
        return TaskDecorator(self, options)

    def register(self, fn: Callable[..., Any], **options: Unpack[TaskOptions]) -> AnyTask:
        """Register ``fn`` as a task; the non-decorator form of :meth:`task`."""
        if not callable(fn):
            raise ConfigurationError(f"@broker.task needs a function, not {fn!r}")
        task_name = options.get("name") or f"{fn.__module__}.{fn.__qualname__}"
        if task_name in self.tasks:
            raise ConfigurationError(
                f"a task named {task_name!r} is already registered; "
                "pass name=... to tell them apart"
            )
        schedule = options.get("schedule")
        config = task_config(task_name, self.default_queue, options)
        for needs, given in (
            ("global_rate_limit", config.global_rate_limit),
            ("global_max_concurrency", config.global_max_concurrency),
            ("unique_for", config.unique_for),
        ):
            if given is not None:
                self.require_store(f"{needs} (task {task_name!r})")
        task: AnyTask
        if inspect.isasyncgenfunction(fn):
            task = StreamTask(self, fn, config)
        elif inspect.iscoroutinefunction(fn):
            task = Task(self, fn, config)
        else:
            task = SyncTask(self, fn, config)
        if task.kind == "stream" and config.unique_for is not None:
            raise ConfigurationError(
                f"unique_for does not apply to async-generator tasks ({task_name!r}): callers "
                "that join a running one could not receive the items it already sent"
            )
        if task.kind == "sync" and config.soft_timeout is not None:
            raise ConfigurationError(
                f"soft_timeout needs an async function ({task_name!r} is a plain one): a "
                "thread cannot be interrupted where it stands; use timeout, or make it async"
            )
        if schedule is not None:
            self.schedules.define(task, schedule)
        self.tasks[task_name] = task
        return task

    # -- schedules -------------------------------------------------------------------

    def schedule(
        self,
        task: AnyTask,
        spec: ScheduleSpec,
        *,
        name: str | None = None,
        **options: Unpack[ScheduleOptions],
    ) -> Schedule:
        """Call ``task`` on ``spec``, from whichever scheduler leads (``aq
        scheduler``, ``aq worker --scheduler``).

        Args:
            task: a task of this broker.
            spec: when: ``aq.every(...)`` or ``aq.cron(...)``.
            name: the schedule's name, unique (default: the task's name).
            options: how to call it (:class:`aq.scheduling.entry.ScheduleOptions`):
                ``args``, ``kwargs``, ``queue``, ``priority``, ``catch_up`` (after
                an outage, how many missed fires to send; default 0) and ``grace``
                (seconds late a fire may still be sent; default 60).

        Raises:
            aq.ConfigurationError: the arguments do not fit the task, the name is
                taken, or an option is out of range.
            aq.SerializationError: an argument cannot be encoded.
        """
        return self.schedules.define(task, spec, name=name, **options)

    async def add_schedule(
        self, task: AnyTask, spec: ScheduleSpec, *, name: str, **options: Unpack[ScheduleOptions]
    ) -> Schedule:
        """:meth:`schedule`, kept in the store until :meth:`remove_schedule`: for
        schedules made at run time (a reminder per user). Adding a name again
        replaces that schedule. Running schedulers pick it up at once.

        Raises:
            aq.ConfigurationError: as :meth:`schedule`, or there is no store.
        """
        return await self.schedules.add(task, spec, name=name, **options)

    async def remove_schedule(self, name: str) -> bool:
        """Remove a schedule added with :meth:`add_schedule`; whether there was one."""
        return await self.schedules.remove(name)

    def get_task(self, name: str) -> AnyTask | None:
        """The registered task called ``name``, if any."""
        return self.tasks.get(name)

    @property
    def queues(self) -> list[str]:
        """Every queue a registered task is sent to, the default queue first."""
        names = [self.default_queue]
        names.extend(t.config.queue for t in self.tasks.values() if t.config.queue not in names)
        return list(dict.fromkeys(names))

    # -- messages ------------------------------------------------------------------

    def encode(self, message: TaskMessage, task: AnyTask | None = None) -> bytes:
        """Encode ``message``, naming the offending argument if one cannot be encoded.

        Raises:
            aq.SerializationError: a value cannot be encoded, or the message is too large.
        """
        return self._publisher.encode(message, task)

    async def publish(self, message: TaskMessage, task: AnyTask | None = None) -> ResultWaiter:
        """Run publish middleware, encode and publish ``message``; return its result waiter."""
        return await self._publisher.publish(message, task)

    async def prepare(self, message: TaskMessage, task: AnyTask | None = None) -> bytes:
        """Run publish middleware's ``before_publish`` on ``message`` and encode it,
        for :meth:`publish_prepared`.

        Raises:
            aq.SerializationError: as :meth:`encode`.
        """
        return await self._publisher.prepare(message, task)

    async def publish_prepared(self, batch: Sequence[tuple[TaskMessage, bytes]]) -> None:
        """Publish prepared messages all at once: pipelined on Redis, one window
        of publisher confirms on RabbitMQ. Returns when the broker has them all.

        Raises:
            aq.BrokerError: the first error of any publish (the others were
                waited for, whether they failed or not).
        """
        await self._publisher.publish_prepared(batch)

    async def cancel(self, task_id: str) -> None:
        """Cancel task ``task_id`` wherever it is: queued tasks will not run, running ones stop."""
        await self.connect()
        await self.transport.broadcast(
            encode_control(ControlMessage("cancel", task_id), self.codec)
        )

    async def get_result(self, task_id: str, task: AnyTask | None = None) -> Any:
        """Look up the outcome of ``task_id`` kept by a broker with ``result_ttl``.

        Works from any process connected to the same broker. Pass the ``task`` to
        convert the value to its return annotation; otherwise it is plain JSON.

        Raises:
            aq.ResultNotFound: nothing is stored under that id (not finished,
                expired, or the workers' broker has no ``result_ttl``).
            aq.TaskFailed: the task failed (``TaskTimeout``, ``TaskCancelled`` ...).
        """
        await self.connect()
        body = await self.store.get(result_key(task_id)) if self.store is not None else None
        if body is None:
            raise ResultNotFound(
                f"no stored result for task {task_id}: not finished, expired, or the "
                "workers' broker was created without result_ttl"
            )
        reply = decode_reply(body, self.codec)
        if task_id not in (reply.correlation_id, reply.task_id):  # another's, copied here
            raise ResultNotFound(f"the result stored for task {task_id} is another task's")
        if reply.kind == "error":
            raise remote_error(task_id, reply.payload)
        convert = task.return_converter if task is not None else None
        if convert is None or reply.payload is None or task is None or task.kind == "stream":
            return reply.payload
        return convert(reply.payload)

    @property
    def pending_replies(self) -> int:
        """Handles still waiting for replies in this process (for tests and metrics)."""
        return self._listener.waiting

    def queue_names(self, queues: Sequence[str] | None) -> list[str]:
        """``queues`` if given, else every queue the registered tasks use."""
        return list(queues) if queues else self.queues

"""Start-up and shutdown hooks, shared state and resources of a broker's processes.

``@broker.on_startup`` and ``@broker.on_shutdown`` register ``async`` hooks;
``@broker.resource`` registers an async generator that opens something (a
database pool, an HTTP client) before its ``yield`` and closes it after. What
they make reaches tasks through :class:`State` (``aq.context().state.db``, any
type) or through the :class:`Resource` itself (``db.get()``, typed).

**Who runs them.** A worker runs every step when it starts, after it connects
and before it consumes anything; a producer runs those marked ``producer=True``
at ``await broker.startup()`` (``async with broker:``). Each step runs once per
process however many holders (a producer, workers) share the broker: it opens
for the first holder that needs it and closes when the last one leaves.

**Order.** Steps open in the order they were declared (resources and start-up
hooks alike; a shutdown hook opens as a no-op), and close in the reverse order
(resources are torn down, shutdown hooks run). A step closes only if the
start-up reached it: declare each shutdown hook after the start-up hook whose
work it undoes, or write one resource instead.

**Failure.** A step that raises while opening stops the start-up: the steps this
holder opened before it are closed, in reverse, and :class:`aq.StartupFailed`
names the step and its error. A step that raises while closing is logged, and
the rest still close.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar, overload

from aq.errors import AQError, ConfigurationError, StartupFailed
from aq.logs import event

__all__ = ["HookFunction", "Lifecycle", "Resource", "ResourceDecorator", "State"]

log = logging.getLogger("aq.lifecycle")

T = TypeVar("T")

_STARTUP, _SHUTDOWN = "start-up hook", "shutdown hook"


class State:
    """The attributes a broker's hooks share with its tasks: ``broker.state``, the
    same object as ``aq.context().state`` in a task.

    A start-up hook sets them (``state.http = httpx.AsyncClient()``), tasks read
    them (``aq.context().state.http``); each open :class:`Resource` is one too,
    under its name. Reading one that was never set raises ``AttributeError``
    naming it. Attributes are typed ``Any``: for a typed path, use a resource.
    """

    def __getattr__(self, name: str) -> Any:
        # Only called for attributes not set: say where they come from.
        raise AttributeError(
            f"aq.State has no attribute {name!r}: set it in a start-up hook "
            f"(state.{name} = ...) or declare a @broker.resource named {name}, "
            "and read it in a running worker"
        )

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return f"<aq.State {', '.join(sorted(vars(self))) or '(empty)'}>"


#: What ``@broker.on_startup`` and ``@broker.on_shutdown`` accept: an ``async``
#: function taking nothing, or the :class:`State`.
HookFunction = Callable[[], Awaitable[object]] | Callable[[State], Awaitable[object]]
H = TypeVar("H", bound=HookFunction)


class _Step(Protocol):
    """One thing a start-up opens and a shutdown closes."""

    kind: str  # what it is, for messages: "start-up hook", "resource"
    qualname: str  # its function's qualified name, for messages
    producer: bool  # whether producers run it too

    async def open(self, state: State) -> None: ...

    async def close(self, state: State) -> None: ...


class _Hook:
    """A start-up hook (run on opening) or a shutdown hook (run on closing)."""

    def __init__(self, fn: HookFunction, kind: str, producer: bool) -> None:
        self.kind = kind
        self.qualname = qualified_name(fn)
        self.producer = producer
        self._fn: Callable[..., Awaitable[object]] = fn
        self._takes_state = _check_hook(fn, kind)

    async def _call(self, state: State) -> None:
        await (self._fn(state) if self._takes_state else self._fn())

    async def open(self, state: State) -> None:
        if self.kind == _STARTUP:
            await self._call(state)

    async def close(self, state: State) -> None:
        if self.kind == _SHUTDOWN:
            await self._call(state)


class Resource(Generic[T]):
    """A value opened at start-up and closed at shutdown, read with :meth:`get`.

    Made by ``@broker.resource`` from an async generator function: what runs
    before its one ``yield`` opens the resource, the value yielded is the
    resource, and what follows the ``yield`` closes it::

        @broker.resource
        async def db() -> AsyncIterator[asyncpg.Pool]:
            pool = await asyncpg.create_pool(DSN)
            yield pool
            await pool.close()

        @broker.task
        async def count_users() -> int:
            return await db.get().fetchval("select count(*) from users")

    ``db.get()`` is typed (``asyncpg.Pool`` here); the value is also
    ``broker.state.db`` while open. Calling the resource, ``db()``, is the same
    as ``db.get()`` (so it can serve as a FastAPI dependency, say).

    Attributes:
        name: its attribute on :class:`State` (the function's name by default).
        qualname: the function's qualified name, which errors and logs give.
        producer: whether producers open it too (``producer=True``), not only workers.
    """

    kind = "resource"

    def __init__(self, fn: Callable[[], AsyncIterator[T]], name: str, producer: bool) -> None:
        self.name = name
        self.qualname = qualified_name(fn)
        self.producer = producer
        self._fn = contextlib.asynccontextmanager(fn)
        self._context: contextlib.AbstractAsyncContextManager[T] | None = None
        self._value: T | None = None

    def __repr__(self) -> str:
        return f"<aq.Resource {self.qualname} {'open' if self.is_open else 'closed'}>"

    @property
    def is_open(self) -> bool:
        """Whether it is open in this process (between start-up and shutdown)."""
        return self._context is not None

    def get(self) -> T:
        """The resource's value, while it is open.

        Raises:
            aq.AQError: it is not open in this process: this is not a running
                worker (or, with ``producer=True``, a started producer), or it
                has been shut down.
        """
        if self._context is None:
            started = "a worker starts, or at await broker.startup() since it has producer=True"
            if not self.producer:
                started = "a worker starts (pass producer=True to open it in producers too)"
            raise AQError(
                f"resource {self.qualname} is not open: it opens when {started}, and "
                "closes at shutdown"
            )
        return self._value  # type: ignore[return-value]  # T, set with _context

    __call__ = get

    async def open(self, state: State) -> None:
        """Run the function up to its ``yield`` (the broker's start-up calls this)."""
        context = self._fn()
        value = await context.__aenter__()
        self._context, self._value = context, value
        setattr(state, self.name, value)

    async def close(self, state: State) -> None:
        """Run the rest of the function (the broker's shutdown calls this)."""
        context, self._context, self._value = self._context, None, None
        with contextlib.suppress(AttributeError):
            delattr(state, self.name)
        if context is not None:
            await context.__aexit__(None, None, None)


class ResourceDecorator:
    """The decorator returned by ``broker.resource(...)`` with options."""

    def __init__(self, lifecycle: Lifecycle, name: str | None, producer: bool) -> None:
        self._lifecycle = lifecycle
        self._name = name
        self._producer = producer

    def __call__(self, fn: Callable[[], AsyncIterator[T]]) -> Resource[T]:
        return self._lifecycle.add_resource(fn, self._name, self._producer)


class Lifecycle:
    """A broker's hooks and resources, its :class:`State`, and which holders
    (the producer, each worker) have them open. See the module docstring."""

    def __init__(self) -> None:
        #: What the hooks share with tasks (``broker.state``).
        self.state = State()
        self._steps: list[_Step] = []
        self._names: set[str] = set()
        self._held: dict[object, list[_Step]] = {}  # holder -> what it opened, in order
        self._holders: dict[_Step, int] = {}  # step -> how many holders have it open
        self._lock = asyncio.Lock()

    def is_held(self, holder: object) -> bool:
        """Whether ``holder`` has started (and not yet stopped) the steps."""
        return holder in self._held

    @overload
    def on_startup(self, fn: H, /) -> H: ...
    @overload
    def on_startup(self, *, producer: bool = False) -> Callable[[H], H]: ...
    def on_startup(  # type: ignore[misc]  # mypy misreads the keyword-only overload
        self, fn: H | None = None, /, *, producer: bool = False
    ) -> H | Callable[[H], H]:
        """Run an ``async`` function when a worker starts, before it consumes:
        ``@broker.on_startup``, or ``@broker.on_startup(producer=True)`` to run it
        in producers too (at ``await broker.startup()``). It takes nothing, or the
        broker's :class:`State` to set what tasks will read.

        Raises:
            aq.ConfigurationError: ``fn`` is not an ``async def`` taking nothing
                or one argument.
        """
        return self._decorate(_STARTUP, fn, producer)

    @overload
    def on_shutdown(self, fn: H, /) -> H: ...
    @overload
    def on_shutdown(self, *, producer: bool = False) -> Callable[[H], H]: ...
    def on_shutdown(  # type: ignore[misc]  # mypy misreads the keyword-only overload
        self, fn: H | None = None, /, *, producer: bool = False
    ) -> H | Callable[[H], H]:
        """Run an ``async`` function when a worker stops, once its running tasks
        are done: ``@broker.on_shutdown``, or ``@broker.on_shutdown(producer=True)``
        to run it in producers too (at ``await broker.shutdown()``). It takes
        nothing, or the :class:`State`. A failure is logged; later steps still close.

        Raises:
            aq.ConfigurationError: as :meth:`on_startup`.
        """
        return self._decorate(_SHUTDOWN, fn, producer)

    def _decorate(self, kind: str, fn: H | None, producer: bool) -> H | Callable[[H], H]:
        def register(fn: H) -> H:
            self._steps.append(_Hook(fn, kind, producer))
            return fn

        return register if fn is None else register(fn)

    @overload
    def resource(self, fn: Callable[[], AsyncIterator[T]], /) -> Resource[T]: ...
    @overload
    def resource(self, *, name: str | None = None, producer: bool = False) -> ResourceDecorator: ...
    def resource(  # type: ignore[misc]  # mypy misreads the keyword-only overload
        self,
        fn: Callable[[], AsyncIterator[T]] | None = None,
        /,
        *,
        name: str | None = None,
        producer: bool = False,
    ) -> Resource[T] | ResourceDecorator:
        """Declare a :class:`Resource`: ``@broker.resource`` over an async generator
        function that takes nothing and yields the value once, or
        ``@broker.resource(name=..., producer=True)``.

        Args:
            name: its attribute on :class:`State` (default: the function's name).
            producer: open it in producers too (at ``await broker.startup()``).

        Raises:
            aq.ConfigurationError: ``fn`` is not an async generator function
                taking no arguments, or the name is taken.
        """
        if fn is None:
            return ResourceDecorator(self, name, producer)
        return self.add_resource(fn, name, producer)

    def add_resource(
        self, fn: Callable[[], AsyncIterator[T]], name: str | None, producer: bool
    ) -> Resource[T]:
        """Declare ``fn`` as a resource; the non-decorator form of :meth:`resource`."""
        _check_resource(fn)
        resource = Resource(fn, name or fn.__name__, producer)
        if not resource.name.isidentifier():
            raise ConfigurationError(
                f"resource name {resource.name!r} is not an identifier: pass name=... "
                "to read it as aq.context().state.<name>"
            )
        if resource.name in self._names:
            raise ConfigurationError(
                f"a resource named {resource.name!r} is already declared: pass "
                f"@broker.resource(name=...) to tell {resource.qualname} apart"
            )
        self._names.add(resource.name)
        self._steps.append(resource)
        return resource

    async def start(self, holder: object, *, worker: bool) -> None:
        """Open, for ``holder``, the steps it needs (every one for a worker, those
        marked ``producer=True`` for a producer) that no other holder has open.
        Does nothing if ``holder`` holds them already.

        Raises:
            aq.StartupFailed: a step raised; what ``holder`` had opened is closed.
        """
        async with self._lock:
            if holder in self._held:
                return
            opened: list[_Step] = []
            self._held[holder] = opened
            try:
                for step in [s for s in self._steps if worker or s.producer]:
                    await self._open(step)
                    opened.append(step)
            except BaseException:
                await self._close(holder)
                raise

    async def stop(self, holder: object) -> None:
        """Close, in reverse order, the steps ``holder`` opened that no other
        holder still has open. A step that raises is logged; the rest still close."""
        async with self._lock:
            await self._close(holder)

    async def _open(self, step: _Step) -> None:
        count = self._holders.get(step, 0)
        if count == 0:
            try:
                await step.open(self.state)
            except Exception as exc:
                raise StartupFailed(step.kind, step.qualname, exc) from exc
        self._holders[step] = count + 1

    async def _close(self, holder: object) -> None:
        for step in reversed(self._held.pop(holder, [])):
            count = self._holders.pop(step) - 1
            if count:
                self._holders[step] = count
                continue
            try:
                await step.close(self.state)
            except Exception as exc:
                event(
                    log,
                    logging.ERROR,
                    "hook.shutdown_failed",
                    hook=step.qualname,
                    kind=step.kind,
                    error=f"{type(exc).__name__}: {exc}",
                    exc_info=exc,
                )


def qualified_name(fn: Callable[..., object]) -> str:
    """``module.qualname`` of ``fn``, what errors and logs name it by."""
    module = getattr(fn, "__module__", None) or "?"
    return f"{module}.{getattr(fn, '__qualname__', repr(fn))}"


def _check_hook(fn: object, kind: str) -> bool:
    """Refuse what cannot be a hook; whether it takes the state.

    Raises:
        aq.ConfigurationError: ``fn`` is not an ``async def`` that takes nothing
            or one positional argument.
    """
    decorator = "@broker.on_startup" if kind == _STARTUP else "@broker.on_shutdown"
    shape = "async def hook() or async def hook(state: aq.State)"
    if not callable(fn):
        raise ConfigurationError(f"{decorator} needs a function ({shape}), not {fn!r}")
    name = qualified_name(fn)
    if inspect.isasyncgenfunction(fn):
        raise ConfigurationError(
            f"{decorator}: {name} is an async generator: to set something up and tear "
            "it down in one function, declare it with @broker.resource"
        )
    if not inspect.iscoroutinefunction(fn):
        what = "a lambda" if getattr(fn, "__name__", "") == "<lambda>" else "not async"
        raise ConfigurationError(
            f"{decorator}: {name} is {what}; a hook runs in the worker's event loop, so "
            f"write it as {shape}"
        )
    params = list(inspect.signature(fn).parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    keywords = [p for p in params if p.kind is p.KEYWORD_ONLY and p.default is p.empty]
    if len(required) > 1 or keywords:
        names = ", ".join(p.name for p in required + keywords)
        raise ConfigurationError(
            f"{decorator}: {name} needs arguments ({names}); a hook is given nothing "
            f"or the state: write it as {shape}"
        )
    return bool(positional) or any(p.kind is p.VAR_POSITIONAL for p in params)


def _check_resource(fn: object) -> None:
    """Refuse what cannot be a resource.

    Raises:
        aq.ConfigurationError: ``fn`` is not an async generator function taking
            no arguments.
    """
    shape = "async def db(): pool = await open_pool(); yield pool; await pool.close()"
    if not inspect.isasyncgenfunction(fn):
        name = qualified_name(fn) if callable(fn) else repr(fn)
        hint = ": it must yield the value, not return it" if callable(fn) else ""
        if inspect.iscoroutinefunction(fn):
            hint = ": it is a coroutine function; yield the value instead of returning it"
        raise ConfigurationError(
            f"@broker.resource needs an async generator function ({shape}), not {name}{hint}"
        )
    required = [
        p
        for p in inspect.signature(fn).parameters.values()
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if required:
        raise ConfigurationError(
            f"@broker.resource: {qualified_name(fn)} takes arguments, and a resource is "
            "given none: one that needs another reads it with other.get()"
        )

"""Start-up and shutdown hooks, shared state and resources, on the memory broker.

Each test builds its own broker and declares the hooks it needs; "pools" are
plain objects that record whether they were closed, so a test can tell what
a hook opened from what reached a task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

import aq
from aq.testing import running_worker


class Pool:
    """Stands for a database pool: made by a hook, used by tasks, closed at shutdown."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.closed = False

    async def fetch(self) -> str:
        if self.closed:
            raise RuntimeError("pool closed")
        return f"row from {self.dsn}"

    async def close(self) -> None:
        self.closed = True


def make_broker() -> aq.Broker:
    return aq.Broker(f"memory://hooks-{uuid.uuid4().hex}")


@contextlib.contextmanager
def on_log(logger: str, name: str, call: Callable[[], None]) -> Iterator[None]:
    """Call ``call`` when ``logger`` logs the event ``name`` (at INFO or above)."""

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().split(" ", 1)[0] == name:
                call()

    log, handler = logging.getLogger(logger), Handler()
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


async def ready(broker: aq.Broker) -> int:
    stats = await broker.admin.stats(broker.default_queue)
    return stats.ready


# -- state and resources reach tasks -------------------------------------------------


async def test_what_a_startup_hook_sets_on_the_state_reaches_tasks_through_the_context() -> None:
    broker = make_broker()

    @broker.on_startup
    async def open_pool(state: aq.State) -> None:
        state.pool = Pool("db://main")

    @broker.task
    async def fetch() -> str:
        pool: Pool = aq.context().state.pool
        return await pool.fetch()

    async with broker, running_worker(broker):
        assert await (await fetch.kiq()).result(timeout=5) == "row from db://main"
        assert broker.state.pool.dsn == "db://main"


async def test_a_resource_reaches_tasks_through_get_and_under_its_name_on_the_state() -> None:
    broker = make_broker()

    @broker.resource
    async def db() -> AsyncIterator[Pool]:
        pool = Pool("db://typed")
        yield pool
        await pool.close()

    @broker.task
    async def fetch_both() -> list[str]:
        return [await db.get().fetch(), await aq.context().state.db.fetch()]

    async with broker, running_worker(broker):
        rows = await (await fetch_both.kiq()).result(timeout=5)
        assert rows == ["row from db://typed"] * 2
        pool = db.get()
        assert db() is pool  # calling the resource is get()
    assert pool.closed


async def test_a_resource_read_outside_a_running_worker_says_it_is_not_open() -> None:
    broker = make_broker()

    @broker.resource
    async def db() -> AsyncIterator[Pool]:
        yield Pool("db://x")

    with pytest.raises(aq.AQError, match=r"resource .*\.db is not open: it opens when a worker"):
        db.get()
    async with broker:  # a producer opens only producer=True resources
        with pytest.raises(aq.AQError, match="pass producer=True"):
            db.get()
        async with running_worker(broker):
            assert db.is_open
    with pytest.raises(aq.AQError, match="is not open"):
        db.get()
    with pytest.raises(AttributeError, match="has no attribute 'db'"):
        broker.state.db  # noqa: B018  # the attribute left with the resource


async def test_the_same_state_object_is_shared_by_every_task_and_the_broker() -> None:
    broker = make_broker()

    @broker.task
    async def state_id() -> int:
        return id(aq.context().state)

    async with broker, running_worker(broker):
        ids = {await (await state_id.kiq()).result(timeout=5) for _ in range(3)}
    assert ids == {id(broker.state)}


async def test_sync_tasks_read_the_state_too() -> None:
    broker = make_broker()

    @broker.on_startup
    async def configure(state: aq.State) -> None:
        state.greeting = "hello"

    @broker.task
    def greet() -> str:
        return str(aq.context().state.greeting)

    async with broker, running_worker(broker):
        assert await (await greet.kiq()).result(timeout=5) == "hello"


# -- order -------------------------------------------------------------------------


async def test_steps_open_in_declaration_order_and_close_in_reverse() -> None:
    broker = make_broker()
    steps: list[str] = []

    @broker.on_startup
    async def first() -> None:
        steps.append("first")

    @broker.resource
    async def second() -> AsyncIterator[None]:
        steps.append("second opened")
        yield
        steps.append("second closed")

    @broker.on_shutdown
    async def undo_first() -> None:
        steps.append("undo first")

    @broker.on_startup
    async def third() -> None:
        steps.append("third")

    @broker.on_shutdown
    async def undo_third(state: aq.State) -> None:
        steps.append("undo third")

    async with running_worker(broker):
        assert steps == ["first", "second opened", "third"]
    assert steps[3:] == ["undo third", "undo first", "second closed"]


async def test_shutdown_hooks_run_once_running_tasks_have_finished() -> None:
    broker = make_broker()
    events: list[str] = []
    started, draining = asyncio.Event(), asyncio.Event()

    @broker.on_shutdown
    async def close_pool() -> None:
        events.append("shutdown hook")

    @broker.task
    async def slow() -> None:
        started.set()
        await draining.wait()  # still running when the worker begins to stop
        events.append("task finished")

    with on_log("aq.worker", "worker.draining", draining.set):
        async with broker, running_worker(broker):
            await slow.kiq()
            await started.wait()
    assert events == ["task finished", "shutdown hook"]


# -- failures ------------------------------------------------------------------------


async def test_a_failing_startup_hook_stops_the_worker_before_it_consumes_anything(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, "aq")
    broker = make_broker()
    steps: list[str] = []

    @broker.on_startup
    async def open_cache() -> None:
        steps.append("cache opened")

    @broker.on_shutdown
    async def close_cache() -> None:
        steps.append("cache closed")

    @broker.on_startup
    async def open_db() -> None:
        raise ConnectionRefusedError("db://main refused the connection")

    @broker.on_shutdown
    async def close_db() -> None:
        steps.append("db closed")

    @broker.task
    async def work() -> None:
        steps.append("task ran")

    async with broker:
        await work.kiq()
        worker = aq.Worker(broker)
        with pytest.raises(aq.StartupFailed) as failed:
            await worker.start()
        assert await ready(broker) == 1  # still queued, never delivered
        assert (await broker.admin.stats(broker.default_queue)).consumers == 0
    assert steps == ["cache opened", "cache closed"]
    assert failed.value.hook == f"{__name__}.{open_db.__qualname__}"
    assert str(failed.value) == (
        f"start-up hook {failed.value.hook} failed: "
        "ConnectionRefusedError: db://main refused the connection"
    )
    assert isinstance(failed.value.__cause__, ConnectionRefusedError)
    (record,) = [r for r in caplog.records if r.getMessage().startswith("worker.startup_failed")]
    assert f"hook={failed.value.hook}" in record.getMessage()
    assert record.exc_info is not None
    assert record.exc_info[0] is ConnectionRefusedError


async def test_a_failing_startup_hook_disconnects_a_broker_the_worker_connected() -> None:
    broker = make_broker()

    @broker.on_startup
    async def fail() -> None:
        raise RuntimeError("no")

    with pytest.raises(aq.StartupFailed, match="RuntimeError: no"):
        await aq.Worker(broker).start()
    assert not broker.is_started


async def test_a_resource_that_fails_to_open_fails_the_startup_and_earlier_ones_close() -> None:
    broker = make_broker()

    @broker.resource
    async def cache() -> AsyncIterator[Pool]:
        pool = Pool("cache://")
        yield pool
        await pool.close()

    @broker.resource
    async def db() -> AsyncIterator[Pool]:
        raise OSError("db://main is down")
        yield Pool("never")

    with pytest.raises(aq.StartupFailed, match=r"resource .*\.db failed: OSError: db://main"):
        await aq.Worker(broker).start()
    assert not cache.is_open
    assert not db.is_open


async def test_a_worker_that_cannot_consume_after_its_hooks_opened_closes_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broker = make_broker()
    order: list[str] = []

    @broker.resource
    async def db() -> AsyncIterator[Pool]:
        pool = Pool("db://")
        yield pool
        await pool.close()
        order.append("db closed")

    @broker.on_shutdown
    async def goodbye() -> None:
        order.append("shutdown hook")

    async def refuse(*args: Any, **kwargs: Any) -> Any:
        raise aq.BrokerError("the broker refused the consumer")

    monkeypatch.setattr(broker.transport, "consume", refuse)  # a fault after the hooks
    with pytest.raises(aq.BrokerError, match="refused the consumer"):
        await aq.Worker(broker).start()
    assert not db.is_open
    assert order == ["shutdown hook", "db closed"]
    await broker.shutdown()


async def test_a_resource_that_never_yields_fails_the_startup() -> None:
    broker = make_broker()

    @broker.resource
    async def empty() -> AsyncIterator[int]:
        if False:  # an async generator that ends without yielding
            yield 1

    with pytest.raises(aq.StartupFailed, match="didn't yield"):
        await aq.Worker(broker).start()


async def test_a_failing_shutdown_step_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, "aq.lifecycle")
    broker = make_broker()
    closed: list[str] = []

    @broker.resource
    async def db() -> AsyncIterator[Pool]:
        pool = Pool("db://")
        yield pool
        await pool.close()
        closed.append("db")

    @broker.on_shutdown
    async def flush() -> None:
        raise RuntimeError("flush failed")

    @broker.on_shutdown
    async def goodbye() -> None:
        closed.append("goodbye")

    async with running_worker(broker):
        pass
    assert closed == ["goodbye", "db"]
    (record,) = caplog.records
    assert record.getMessage().startswith("hook.shutdown_failed")
    assert f"hook={__name__}.{flush.__qualname__}" in record.getMessage()
    assert "RuntimeError: flush failed" in record.getMessage()


# -- what is refused at decoration ----------------------------------------------------


def plain(state: aq.State) -> None:
    """Not async."""


async def two_args(state: aq.State, other: int) -> None:
    """One argument too many."""


async def keyword_only(*, state: aq.State) -> None:
    """A required keyword-only argument."""


async def generator() -> AsyncIterator[int]:
    """An async generator: a resource, not a hook."""
    yield 1


@pytest.mark.parametrize(
    ("hook", "message"),
    [
        (plain, r"\.plain is not async; .* write it as async def hook\(\)"),
        (lambda: None, r"is a lambda; .* write it as async def hook\(\)"),
        (two_args, r"needs arguments \(state, other\); a hook is given nothing or the state"),
        (keyword_only, r"needs arguments \(state\)"),
        (generator, r"is an async generator: .* @broker.resource"),
        ("not callable", r"needs a function"),
    ],
)
@pytest.mark.parametrize("decorator", ["on_startup", "on_shutdown"])
def test_a_hook_that_is_not_an_async_function_of_the_state_is_refused(
    decorator: str, hook: Any, message: str
) -> None:
    broker = make_broker()
    with pytest.raises(aq.ConfigurationError, match=message) as refused:
        getattr(broker, decorator)(hook)
    assert str(refused.value).startswith(f"@broker.{decorator}")
    with pytest.raises(aq.ConfigurationError, match=message):
        getattr(broker, decorator)(producer=True)(hook)


async def coroutine() -> Pool:
    """Returns where a resource yields."""
    return Pool("x")


async def needs_args(dsn: str) -> AsyncIterator[Pool]:
    """A resource taking an argument."""
    yield Pool(dsn)


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (coroutine, r"needs an async generator function .* yield the value instead"),
        (plain, r"needs an async generator function .* must yield the value"),
        (needs_args, r"takes arguments, and a resource is given none"),
    ],
)
def test_a_resource_that_is_not_an_async_generator_of_nothing_is_refused(
    fn: Callable[..., Any], message: str
) -> None:
    with pytest.raises(aq.ConfigurationError, match=message):
        make_broker().resource(fn)


def test_two_resources_of_one_name_are_refused() -> None:
    broker = make_broker()
    broker.resource(generator)
    with pytest.raises(aq.ConfigurationError, match=r"'generator' is already declared"):
        broker.resource(generator)
    assert broker.resource(name="other")(generator).name == "other"


# -- producers and sharing --------------------------------------------------------


async def test_producer_hooks_run_in_async_with_broker_and_worker_hooks_do_not() -> None:
    broker = make_broker()
    steps: list[str] = []

    @broker.on_startup(producer=True)
    async def producer_start() -> None:
        steps.append("producer start")

    @broker.on_startup
    async def worker_start() -> None:
        steps.append("worker start")

    @broker.resource(producer=True)
    async def client() -> AsyncIterator[str]:
        yield "client"
        steps.append("client closed")

    @broker.on_shutdown(producer=True)
    async def producer_stop() -> None:
        steps.append("producer stop")

    async with broker:
        assert steps == ["producer start"]
        assert client.get() == "client"
        await broker.startup()  # idempotent: nothing runs twice
        assert steps == ["producer start"]
    assert steps == ["producer start", "producer stop", "client closed"]


async def test_a_producer_that_only_sends_runs_no_hooks() -> None:
    broker = make_broker()
    ran: list[str] = []

    @broker.on_startup(producer=True)
    async def hook() -> None:
        ran.append("hook")

    @broker.task
    async def noop() -> None:
        pass

    await noop.kiq()  # connects on first use, without the start-up
    assert broker.is_started
    assert ran == []
    await broker.startup()
    assert ran == ["hook"]
    await broker.shutdown()


async def test_a_failing_producer_hook_fails_the_startup_and_leaves_it_disconnected() -> None:
    broker = make_broker()
    closed: list[str] = []

    @broker.on_startup(producer=True)
    async def first() -> None:
        pass

    @broker.on_shutdown(producer=True)
    async def undo_first() -> None:
        closed.append("first")

    @broker.on_startup(producer=True)
    async def second() -> None:
        raise ValueError("bad setting")

    with pytest.raises(aq.StartupFailed, match=r"\.second failed: ValueError: bad setting"):
        async with broker:
            pass
    assert closed == ["first"]
    assert not broker.is_started


async def test_hooks_run_once_when_a_producer_and_a_worker_share_a_broker() -> None:
    broker = make_broker()
    counts = {"both": 0, "worker": 0, "both closed": 0, "worker closed": 0}

    @broker.on_startup(producer=True)
    async def both() -> None:
        counts["both"] += 1

    @broker.on_startup
    async def worker_only() -> None:
        counts["worker"] += 1

    @broker.on_shutdown(producer=True)
    async def both_closed() -> None:
        counts["both closed"] += 1

    @broker.on_shutdown
    async def worker_closed() -> None:
        counts["worker closed"] += 1

    async with broker:
        async with running_worker(broker), running_worker(broker):
            assert counts == {"both": 1, "worker": 1, "both closed": 0, "worker closed": 0}
        # the workers have gone; the producer still holds its own
        assert counts == {"both": 1, "worker": 1, "both closed": 0, "worker closed": 1}
    assert counts == {"both": 1, "worker": 1, "both closed": 1, "worker closed": 1}


async def test_a_startup_hook_may_send_tasks() -> None:
    broker = make_broker()
    done = asyncio.Event()

    @broker.task
    async def warm_up() -> None:
        done.set()

    @broker.on_startup
    async def schedule_warm_up() -> None:
        await warm_up.kiq()  # connects lazily, never waits on the start-up

    async with running_worker(broker):
        await done.wait()
    await broker.shutdown()


async def test_a_worker_stopped_while_its_hooks_run_never_consumes() -> None:
    broker = make_broker()
    entered, release = asyncio.Event(), asyncio.Event()
    closed: list[str] = []

    @broker.on_startup
    async def slow_start() -> None:
        entered.set()
        await release.wait()

    @broker.on_shutdown
    async def stop() -> None:
        closed.append("stopped")

    worker = aq.Worker(broker)
    starting = asyncio.create_task(worker.start())
    await entered.wait()
    stopping = asyncio.create_task(worker.stop())
    release.set()
    await asyncio.gather(starting, stopping)
    assert closed == ["stopped"]
    assert (await broker.admin.stats(broker.default_queue)).consumers == 0
    await broker.shutdown()

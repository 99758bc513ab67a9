"""Running a worker as a process: its event loop, signals, logging and the exit code.

``run(...)`` is what ``aq worker`` calls in each worker process. SIGTERM or
SIGINT starts a graceful stop (see :meth:`aq.Worker.stop`); a second signal
cuts the grace period short, cancelling running tasks so their messages are
returned to the queue at once. A worker whose start-up hooks failed prints
which and why, and exits with :data:`EXIT_STARTUP_FAILED`.

The event loop is uvloop's when it is installed (``aq-tasks[uvloop]``) unless
``--loop asyncio`` says otherwise: it cut the worker's CPU per task by about a
quarter on RabbitMQ and a tenth on Redis (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import gc
import signal
import socket
import sys
from collections.abc import Callable, Sequence

from aq.broker import Broker
from aq.errors import ConfigurationError, StartupFailed
from aq.monitor.http import MetricsServer, bind
from aq.worker.options import WorkerOptions
from aq.worker.pulse import Pulse
from aq.worker.supervisor import EXIT_SHUT_DOWN, EXIT_STARTUP_FAILED, Supervisor
from aq.worker.worker import Worker

__all__ = ["LOOPS", "loop_factory", "run", "serve"]

#: The values of ``aq worker --loop``.
LOOPS = ("auto", "asyncio", "uvloop")


def loop_factory(loop: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop factory for ``--loop`` (None: asyncio's own).

    Raises:
        aq.ConfigurationError: an unknown value, or uvloop asked for but not installed.
    """
    if loop not in LOOPS:
        raise ConfigurationError(f"--loop must be one of {', '.join(LOOPS)}, not {loop!r}")
    if loop == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if loop == "auto":
            return None
        raise ConfigurationError(
            "--loop uvloop needs uvloop installed: pip install 'aq-tasks[uvloop]'"
        ) from None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


async def serve(
    broker: Broker,
    options: WorkerOptions,
    *,
    watch_parent: bool = False,
    isolation_args: Sequence[str] | None = None,
) -> int:
    """Run a worker until a signal (or ``max_tasks``, or ``aq control shutdown``)
    stops it; the process's exit code (:data:`EXIT_SHUT_DOWN` for the last, and
    :data:`EXIT_STARTUP_FAILED` if a start-up hook failed: it never consumed).

    With ``watch_parent``, standard input is a pipe from the supervising
    process, and its end-of-file (the supervisor died, even by SIGKILL) stops
    the worker too, so no orphan keeps running. With ``isolation_args``, this
    process also keeps an isolation worker running as its child (``aq worker
    --no-supervise``), and stops it with itself.
    """
    pulse = Pulse.from_environment()  # taken before any child of this process starts
    # Bound first: a port in use fails at once, before anything else starts.
    served = None if watch_parent else _metrics_socket(options)
    worker = Worker(broker, options=options)
    metrics = _serve_metrics(worker, served) if served is not None else None
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Task[None]] = []
    grace = options.shutdown_timeout
    keeper = Supervisor([], 0, grace, isolation_args) if isolation_args else None

    def on_signal() -> None:
        if keeper is not None:
            keeper.on_signal()
        if not stopping:
            stopping.append(loop.create_task(worker.stop()))
        else:  # a second signal: no more grace
            worker.abort()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    if watch_parent:
        await _stop_on_eof(worker, on_signal)
    keeping = loop.create_task(keeper.run(handle_signals=False)) if keeper else None
    beating: list[asyncio.Task[None]] = []

    def started() -> None:  # tell the supervisor, then keep telling it the load
        if pulse is not None:
            pulse.ready()
            beating.append(loop.create_task(pulse.beat(worker)))

    try:
        if metrics is not None:
            await metrics.start()
        worker.on_started = started  # before it logs worker.started, which tests await
        try:
            await worker.start()
        except StartupFailed as exc:  # logged with its traceback; this line says what
            print(f"aq: error: {exc}", file=sys.stderr, flush=True)
            return EXIT_STARTUP_FAILED
        await worker.wait_stopped()
        await asyncio.gather(*stopping, return_exceptions=True)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        for task in beating:
            task.cancel()
        await asyncio.gather(*beating, return_exceptions=True)
        if pulse is not None:
            pulse.close()
        if metrics is not None:
            await metrics.close()
        if keeper is not None and keeping is not None:
            keeper.stop()
            await asyncio.gather(keeping, return_exceptions=True)
        await broker.shutdown()
    return EXIT_SHUT_DOWN if worker.shutdown_requested else 0


def _metrics_socket(options: WorkerOptions) -> socket.socket | None:
    if options.metrics_port is None:
        return None
    return bind(options.metrics_host, options.metrics_port)


def _serve_metrics(worker: Worker, sock: socket.socket) -> MetricsServer:
    """The metrics port of a lone worker: its own metrics and health."""
    from aq.monitor.metrics import QueueDepth, scrape

    reporter = worker.reporter
    assert reporter.metrics is not None
    registry, depth = reporter.metrics.registry, QueueDepth()
    registry.register(depth)
    admin, queues = worker.broker.admin, worker.queues
    return MetricsServer(sock, lambda: scrape(registry, depth, admin, queues), reporter.health)


def tune_gc() -> None:
    """Make garbage collection cheaper for a process that runs thousands of tasks at once.

    Everything alive after start-up (modules, the app's tasks) is frozen out of
    collection, and every generation is collected less often: with many live
    tasks, each full collection walks all of them, and with the default
    thresholds they come often enough to take a third of a busy worker's time.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(_GC_GEN0_THRESHOLD, 20, 100)


_GC_GEN0_THRESHOLD = 50_000


def run(
    broker: Broker,
    options: WorkerOptions,
    *,
    watch_parent: bool = False,
    loop: str = "auto",
    isolation_args: Sequence[str] | None = None,
) -> int:
    """Run a worker in a fresh event loop (see ``loop_factory``) until it is
    stopped; its exit code."""
    factory = loop_factory(loop)
    tune_gc()
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(
            serve(broker, options, watch_parent=watch_parent, isolation_args=isolation_args)
        )


async def _stop_on_eof(worker: Worker, stop: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def wait_eof() -> None:
        await reader.read()
        stop()

    task = loop.create_task(wait_eof())
    _background.add(task)
    task.add_done_callback(_background.discard)


_background: set[asyncio.Task[None]] = set()

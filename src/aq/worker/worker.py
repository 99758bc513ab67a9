"""``aq.Worker``: the consume loop and lifecycle of one worker in one event loop.

The worker takes a delivery only when one of its ``concurrency`` slots is free
(so prefetch is bounded by it), runs each in its own asyncio task through the
:class:`~aq.worker.executor.Executor`, listens on the control channel for
cancellations, and stops gracefully: it stops taking deliveries, gives running
tasks ``shutdown_timeout`` seconds to finish, then cancels the rest, whose
deliveries go back to the queue unsettled.

The broker's start-up hooks and resources (:mod:`aq.lifecycle`) open after the
worker connects and before it subscribes to anything, so a hook that fails
leaves nothing consumed; their shutdown side runs last in :meth:`Worker.stop`,
once no task runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Self

from aq import background
from aq.broker import Broker
from aq.errors import MessageDecodeError, StartupFailed
from aq.logs import event
from aq.message import decode_control
from aq.scheduling.leadership import check_scheduler
from aq.scheduling.scheduler import Scheduler
from aq.transport.base import Consumer, Delivery, Inbox
from aq.transport.kit import redact_url
from aq.worker.cluster import ClusterLimits
from aq.worker.crashes import CrashMode, CrashPolicy
from aq.worker.deadlines import check_hold_limit, check_soft_limits
from aq.worker.executor import Executor
from aq.worker.handoff import HandOff, HandOffAbandoned
from aq.worker.limits import TaskLimits
from aq.worker.memory import MemoryLimit
from aq.worker.options import (
    DEFAULT_CONCURRENCY,
    DEFAULT_HANDOFF_TIMEOUT,
    DEFAULT_LEASE_TIME,
    DEFAULT_SHUTDOWN_TIMEOUT,
    WorkerOptions,
)
from aq.worker.remote import Remote
from aq.worker.reporting import Reporter

__all__ = ["Worker"]

log = logging.getLogger("aq.worker")

_REVOKED_MAX = 100_000
_REVOKED_TTL = 3600.0
_INTERNAL_ERROR_LIMIT = 5


class Worker:
    """Consumes task messages from ``queues`` and runs them.

    Args:
        broker: the broker whose tasks this worker runs.
        queues: queue names to consume (default: every queue a registered task uses).
        concurrency: the most tasks running at once; also bounds prefetch.
        shutdown_timeout: seconds running tasks get to finish on :meth:`stop`
            before they are cancelled and returned to the queue.
        max_tasks: stop by itself after starting this many tasks (used by
            ``--max-tasks-per-child``).
        crashes: what becomes of a message whose workers died while running it
            (see :mod:`aq.worker.crashes`): ``"inline"`` (the default) runs it
            again here until ``max_deliveries``; ``"isolate"`` moves it to its
            queue's isolation queue, for an isolation worker to run alone (what
            ``aq worker`` does, since it runs one); ``"isolated"`` makes this the
            isolation worker: it consumes the isolation queues of ``queues``, one
            message at a time (``concurrency`` is 1).
        handoff_timeout: seconds a finished task's outcome is kept while the
            broker cannot be reached, before its message is left to be delivered
            again (see :mod:`aq.worker.handoff`).
        lease_time: seconds a lease this worker holds (a ``global_max_concurrency``
            slot, the scheduler's leadership) stays taken if the worker dies;
            renewed every third of it meanwhile.
        scheduler: also run a :class:`aq.Scheduler` here (one of all the
            schedulers running leads and fires the schedules).
        events: emit monitoring events (docs/monitoring.md).
        default_timeout: the time limit of tasks that set no ``timeout``.
        default_retries: the retries of tasks that set no ``retries``.
        default_rate_limit: the rate limit, such as ``"100/s"``, of each task
            that sets no ``rate_limit`` (per task, in this worker).
        options: all of the above as one :class:`aq.worker.options.WorkerOptions`
            (how ``aq worker`` builds its workers); when given, the keywords
            above are not read.

    Use ``async with Worker(broker):`` or :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        broker: Broker,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
        max_tasks: int | None = None,
        crashes: CrashMode = "inline",
        handoff_timeout: float = DEFAULT_HANDOFF_TIMEOUT,
        lease_time: float = DEFAULT_LEASE_TIME,
        scheduler: bool = False,
        events: bool = False,
        default_timeout: float | None = None,
        default_retries: int | None = None,
        default_rate_limit: str | None = None,
        options: WorkerOptions | None = None,
    ) -> None:
        if options is None:
            options = WorkerOptions(
                tuple(queues) if queues else None,
                concurrency,
                shutdown_timeout,
                max_tasks,
                crashes,
                handoff_timeout,
                lease_time,
                scheduler,
                events,
                default_timeout=default_timeout,
                default_retries=default_retries,
                default_rate_limit=default_rate_limit,
            )
        #: Every setting of this worker (what ``aq worker`` passes whole).
        self.options = options
        self.broker = broker
        self.queues = broker.queue_names(options.queues)
        self.crashes = CrashPolicy(options.crashes, broker.transport.max_deliveries)
        self.concurrency = 1 if options.crashes == "isolated" else options.concurrency
        self.shutdown_timeout = options.shutdown_timeout
        self.max_tasks = options.max_tasks_per_child
        self.started_count = 0
        self.finished_count = 0
        #: Tasks cancelled by shutdown, whose messages go back to the queue.
        self.interrupted_count = 0
        #: Task id -> its deliveries running now (several when messages share an id).
        self._running: dict[str, set[Delivery]] = {}
        self._revoked: OrderedDict[str, float] = OrderedDict()
        self._cluster = ClusterLimits(broker.store, lease_time=options.lease_time)
        #: This worker's own per-task limits (``aq control rate-limit`` changes them).
        self.limits = TaskLimits(options.default_rate())
        #: Its id, events, states and stats (:mod:`aq.worker.reporting`).
        self.reporter = Reporter(self)
        #: This worker's id, ``host.pid``: what ``aq inspect --worker`` names.
        self.id = self.reporter.id
        #: Called once it consumes, before ``worker.started`` is logged (a
        #: supervised child tells its supervisor so).
        self.on_started: Callable[[], None] | None = None
        self.executor = Executor(
            broker,
            self.limits,
            self._running,
            self._is_revoked,
            self.crashes,
            HandOff(options.handoff_timeout),
            self._cluster,
            self.reporter.watch,
            default_timeout=options.default_timeout,
            default_retries=options.default_retries,
        )
        self._inflight: dict[Delivery, asyncio.Task[None]] = {}
        self._room: asyncio.Future[None] | None = None
        self._consumer: Consumer | None = None
        self._control: Inbox | None = None
        self._consume_task: asyncio.Task[None] | None = None
        self._control_task: asyncio.Task[None] | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._renew_task: asyncio.Task[None] | None = None
        self._scheduler_task: asyncio.Task[None] | None = None
        self._beat_task: asyncio.Task[None] | None = None
        self._health_task: asyncio.Task[None] | None = None
        self._memory_task: asyncio.Task[None] | None = None
        limit = options.max_memory_per_child
        self._memory = None if limit is None else MemoryLimit(limit, self._outgrown, self._ran)
        if options.scheduler:
            check_scheduler(broker)
        self._self_stop: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        self._activity: asyncio.Future[None] | None = None
        self._stopping = False
        #: Whether ``aq control shutdown`` stopped this worker (its process then
        #: exits with EXIT_SHUT_DOWN, and its supervisor does not replace it).
        self.shutdown_requested = False
        self._remote = Remote(self)
        self._answering: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def in_flight(self) -> int:
        """How many deliveries are being processed now."""
        return len(self._inflight)

    async def start(self) -> None:
        """Connect, run the broker's start-up hooks and open its resources, then
        begin consuming.

        Raises:
            aq.ConfigurationError: a task of this worker's queues has a timeout
                longer than the broker lets a delivery stay unsettled, or a soft
                time limit that ``default_timeout`` would cut short.
            aq.StartupFailed: a start-up hook or resource raised: what had
                opened was closed, nothing was consumed, and the broker was
                disconnected if this worker connected it.
        """
        check_hold_limit(self.broker, self.queues, self.options.default_timeout)
        check_soft_limits(self.broker, self.queues, self.options.default_timeout)
        await self._open_hooks()
        if self._stopping:  # stopped while the hooks ran: consume nothing
            await self.broker.lifecycle.stop(self)
            return
        transport = self.broker.transport
        try:
            self._control = await transport.subscribe_control()
            isolated = self.crashes.mode == "isolated"
            self._consumer = await transport.consume(
                self.queues, self.concurrency, isolated=isolated
            )
        except BaseException:  # nothing consumed: what the hooks opened closes again
            if self._control is not None:
                await self._control.close()
                self._control = None
            await self.broker.lifecycle.stop(self)
            raise
        consumer, control = self._consumer, self._control
        self._consume_task = background.start("aq-consume", lambda: self._consume(consumer))
        self._control_task = background.start("aq-control", lambda: self._listen(control))
        if self.options.scheduler:
            scheduler = Scheduler(self.broker, lease_time=self.options.lease_time)
            self._scheduler_task = background.start("aq-scheduler", scheduler.run)
        if any(t.config.global_max_concurrency for t in self.broker.tasks.values()):
            self._renew_task = background.start("aq-renew-slots", self._cluster.renew)
        interval = transport.heartbeat_interval
        if interval:
            self._heartbeat_task = background.start(
                "aq-heartbeat", lambda: self._heartbeat(interval)
            )
        self.reporter.online()
        if self.reporter.emitter is not None:
            self._beat_task = background.start("aq-worker-heartbeat", self.reporter.heartbeats)
        if self.reporter.metrics is not None:
            self._health_task = background.start("aq-health", self.reporter.check_health)
        if self._memory is not None:
            self._memory_task = background.start("aq-memory", self._memory.watch)
        if self.on_started is not None:
            self.on_started()
        event(
            log,
            logging.INFO,
            "worker.started",
            worker=self.id,
            queues=",".join(self.queues),
            concurrency=self.concurrency,
            crashes=self.crashes.mode,
            broker=redact_url(self.broker.url),
            loop=type(asyncio.get_running_loop()).__module__.partition(".")[0],
        )

    async def _open_hooks(self) -> None:
        broker = self.broker
        connected = broker.is_started
        await broker.connect()
        try:
            await broker.lifecycle.start(self, worker=True)
        except StartupFailed as exc:
            event(
                log,
                logging.ERROR,
                "worker.startup_failed",
                worker=self.id,
                hook=exc.hook,
                error=exc.reason,
                exc_info=exc.__cause__,
            )
            if not connected:
                await broker.shutdown()
            raise

    async def wait_stopped(self) -> None:
        """Wait until the worker has stopped (for example after ``max_tasks``)."""
        await self._stopped.wait()

    async def stop(self, timeout: float | None = None) -> None:
        """Stop gracefully: no new deliveries; running tasks get ``timeout`` seconds
        (default ``shutdown_timeout``), then are cancelled and their messages requeued."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        grace = self.shutdown_timeout if timeout is None else timeout
        if self._scheduler_task is not None:  # resigns, so another leads at once
            self._scheduler_task.cancel()
            await asyncio.gather(self._scheduler_task, return_exceptions=True)
        consume_loop = self._consume_task
        if consume_loop is not None:
            consume_loop.cancel()
            await asyncio.gather(consume_loop, return_exceptions=True)
        if self._inflight:
            event(log, logging.INFO, "worker.draining", in_flight=len(self._inflight), grace=grace)
            pending = set(self._inflight.values())
            if grace > 0:
                _, pending = await asyncio.wait(pending, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        if self.interrupted_count:
            event(log, logging.WARNING, "worker.requeued", count=self.interrupted_count)
        for loop_task in (
            self._control_task,
            self._heartbeat_task,
            self._renew_task,
            self._beat_task,
            self._health_task,
            self._memory_task,
        ):
            if loop_task is not None:
                loop_task.cancel()
                await asyncio.gather(loop_task, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.close()  # returns unsettled deliveries to their queues
        if self._control is not None:
            await self._control.close()
        if self._answering:  # answers being sent (a shutdown's, say) get a moment
            await asyncio.wait(self._answering, timeout=1.0)
        await self.reporter.offline()
        await self.broker.lifecycle.stop(self)  # once no task runs
        event(log, logging.INFO, "worker.stopped", finished=self.finished_count)
        self._stopped.set()
        self._notify()

    def request_shutdown(self) -> None:
        """Stop gracefully because an operator asked (``aq control shutdown``)."""
        self.shutdown_requested = True
        if not self._stopping:
            asyncio.get_running_loop().call_soon(self._stop_soon)

    def abort(self) -> None:
        """Cancel every running task now; their messages return to the queue."""
        for task in list(self._inflight.values()):
            task.cancel()

    async def wait_idle(self) -> None:
        """Wait until no task runs and the worker's queues hold no ready, delayed or
        unacked messages, or for an isolation worker no isolated ones (for tests and
        ``aq.testing``)."""
        admin = self.broker.admin
        while True:
            # Armed before looking, so activity while the stats are read is not missed.
            if self._activity is None:
                self._activity = asyncio.get_running_loop().create_future()
            activity = self._activity
            if not self._inflight:
                stats = [await admin.stats(q) for q in self.queues]
                if self.crashes.mode == "isolated":  # its queues are the isolation queues
                    idle = all(s.isolated == 0 for s in stats)
                else:
                    idle = all(s.ready == 0 and s.delayed == 0 and s.unacked == 0 for s in stats)
                if idle:
                    return
            if self._stopping:
                return
            await asyncio.shield(activity)

    def _notify(self) -> None:
        activity, self._activity = self._activity, None
        if activity is not None and not activity.done():
            activity.set_result(None)

    async def _consume(self, consumer: Consumer) -> None:
        inflight = self._inflight
        concurrency = self.concurrency
        loop = asyncio.get_running_loop()
        while True:
            if len(inflight) >= concurrency:  # every slot taken: wait for one to free up
                self._room = loop.create_future()
                await self._room
                continue
            delivery = await consumer.get()
            inflight[delivery] = asyncio.create_task(self._run(delivery))
            self.started_count += 1
            self._notify()
            if self.max_tasks is not None and self.started_count >= self.max_tasks:
                event(log, logging.INFO, "worker.max_tasks", count=self.started_count)
                asyncio.get_running_loop().call_soon(self._stop_soon)
                return

    def _ran(self) -> bool:
        return self.started_count > 0

    def _outgrown(self) -> None:
        """Past ``--max-memory-per-child``: stop gracefully, to be replaced."""
        if not self._stopping:
            asyncio.get_running_loop().call_soon(self._stop_soon)

    def _stop_soon(self) -> None:
        self._self_stop = asyncio.create_task(self.stop())  # referenced until the worker is gone

    async def _run(self, delivery: Delivery) -> None:
        try:
            await self.executor.handle(delivery)
        except asyncio.CancelledError:
            self.interrupted_count += 1
            raise
        except HandOffAbandoned:  # logged; the broker delivers the message again
            delivery.abandon()
        except Exception as exc:
            # Never lost: requeued for another try, and dead-lettered if it keeps failing.
            log.exception("internal error while processing a delivery")
            with contextlib.suppress(Exception):
                if delivery.delivery_count >= _INTERNAL_ERROR_LIMIT:
                    await delivery.dead_letter(f"internal error: {type(exc).__name__}: {exc}")
                else:
                    await delivery.requeue()
        finally:
            del self._inflight[delivery]
            room, self._room = self._room, None
            if room is not None and not room.done():
                room.set_result(None)
            self.finished_count += 1
            self._notify()
            if self._memory is not None:
                self._memory.check()

    async def _listen(self, control: Inbox) -> None:
        codec = self.broker.codec
        while True:
            body = await control.get()
            try:
                command = decode_control(body, codec)
            except MessageDecodeError as exc:
                event(log, logging.WARNING, "control.ignored", reason=str(exc))
                continue
            if command.op == "schedules" or not self._remote.concerns(command):
                continue
            if command.op == "cancel":
                self._revoke(command.task_id)
            else:  # answered aside: a slow reply never holds up the cancels behind it
                answering = asyncio.create_task(self._remote.act(command))
                self._answering.add(answering)
                answering.add_done_callback(self._answering.discard)

    async def _heartbeat(self, interval: float) -> None:
        """Keep the claims of long-running deliveries fresh so they are not redelivered."""
        while True:
            await asyncio.sleep(interval)
            deliveries = list(self._inflight)
            if deliveries:
                results = await asyncio.gather(
                    *(d.keep_alive() for d in deliveries), return_exceptions=True
                )
                failed = sum(isinstance(r, Exception) for r in results)
                if failed:
                    event(log, logging.WARNING, "worker.heartbeat_failed", count=failed)

    def _revoke(self, task_id: str) -> None:
        now = time.monotonic()
        revoked = self._revoked
        revoked[task_id] = now + _REVOKED_TTL
        revoked.move_to_end(task_id)
        while revoked and (len(revoked) > _REVOKED_MAX or next(iter(revoked.values())) < now):
            revoked.popitem(last=False)
        for delivery in self._running.get(task_id, ()):
            runner = self._inflight.get(delivery)
            if runner is not None:
                event(log, logging.INFO, "task.cancelling", task_id=task_id)
                runner.cancel()

    def _is_revoked(self, task_id: str) -> bool:
        expiry = self._revoked.get(task_id)
        return expiry is not None and expiry > time.monotonic()

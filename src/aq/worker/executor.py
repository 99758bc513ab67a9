"""Running one delivery to its end: decode, execute, hand off, settle.

The :class:`Executor` owns what happens to a single message inside a worker:
it rejects what cannot run (undecodable, unknown task, expired, cancelled) to
the dead-letter store or with a reply, applies the task's limits (and looks
at ``expires`` again once its turn comes, since the wait may outlast it), runs
the function under its time limit with ``aq.context()`` set, and then hands the
outcome off before settling the delivery: the result reply is sent, a retry is
republished or the message dead-lettered, and only then is it acked. A worker
that dies anywhere before the ack leaves the message to be redelivered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Literal

from aq.broker import Broker
from aq.context import TaskContext, set_context
from aq.errors import (
    MessageDecodeError,
    SerializationError,
    TaskCancelled,
    UnknownTask,
    UntrustedMessage,
    WorkerCrashed,
)
from aq.logs import event
from aq.message import TaskMessage, decode_task, error_payload, outcome_error
from aq.middleware import Outcome
from aq.monitor.watch import TaskWatch
from aq.task import AnyTask
from aq.transport.base import Delivery
from aq.worker.cluster import Admission, ClusterLimits, Deferral, LimitKeyFailed
from aq.worker.crashes import CrashPolicy
from aq.worker.deadlines import SoftDeadline, SoftLimited, run_with_deadline, soft_stream
from aq.worker.handoff import OUTAGE, HandOff
from aq.worker.limits import TaskLimits
from aq.worker.retrying import attempts_for, judge
from aq.worker.settle import Settler, WorkflowStuck

__all__ = ["Executor"]

log = logging.getLogger("aq.worker")
_MAX_REASON = 2000


class Executor:
    """Executes deliveries for one worker; see the module docstring.

    Args:
        broker: the broker whose task registry, codec and middleware are used.
        limits: per-task rate and concurrency limits of this worker.
        running: id -> the deliveries of that id whose task function is executing
            (or waiting for its turn) now; several when messages share an id. The
            worker cancels the asyncio task handling each of them when a cancel
            request for the id arrives.
        cancelled: ids whose cancellation was requested (running or not yet seen).
        crashes: what becomes of a message whose workers died while it ran.
        handoff: how hand-off steps ride out broker outages.
        cluster: the limits shared by every worker (``global_rate_limit``...).
        watch: what is told of each step of a task's life (events, states,
            metrics: :mod:`aq.monitor.watch`); ``None`` when nothing watches.
        default_timeout: the time limit of tasks that set none (``--default-timeout``).
        default_retries: the retries of tasks that set none (``--default-retries``).
    """

    def __init__(
        self,
        broker: Broker,
        limits: TaskLimits,
        running: MutableMapping[str, set[Delivery]],
        cancelled: Callable[[str], bool],
        crashes: CrashPolicy,
        handoff: HandOff,
        cluster: ClusterLimits,
        watch: TaskWatch | None = None,
        *,
        default_timeout: float | None = None,
        default_retries: int | None = None,
    ) -> None:
        self.broker = broker
        self.default_timeout = default_timeout
        #: ``max_attempts`` of the messages whose task set no ``retries``.
        self.default_attempts = attempts_for(default_retries)
        self.transport = broker.transport
        self.codec = broker.codec
        self.limits = limits
        self.running = running
        self.revoked = cancelled
        self.crashes = crashes
        self.handoff = handoff
        self.cluster = cluster
        self.settle = Settler(broker, handoff)
        self.settle.watch = self.watch = watch
        #: Messages decoded and waiting for their turn (``aq inspect reserved``),
        #: and those whose function runs, since when (``aq inspect active``).
        self.reserved: dict[Delivery, TaskMessage] = {}
        self.active: dict[Delivery, tuple[TaskMessage, float]] = {}

    def is_cancelled(self, message: TaskMessage) -> bool:
        """Whether ``message``, or the workflow it is a step of, was cancelled."""
        if self.revoked(message.id):
            return True
        flow = message.workflow
        return flow is not None and self.revoked(flow["root"])

    async def handle(self, delivery: Delivery) -> None:
        """Process ``delivery`` and settle it (ack, retry or dead-letter)."""
        size, limit = len(delivery.body), self.broker.max_message_size
        if size > limit:  # never handed to the parser: it could hold the worker for seconds
            event(
                log, logging.ERROR, "task.oversized", queue=delivery.queue, size=size, limit=limit
            )
            reason = f"message of {size} bytes is over max_message_size ({limit}); not decoded"
            if self.watch is not None:
                self.watch.dead_lettered(None, delivery.queue, reason)
            await self.handoff("-", "-", lambda: delivery.dead_letter(reason))
            return
        try:
            message = decode_task(delivery.body, self.codec)
            if message.queue != delivery.queue and self.codec.keyring is not None:
                raise UntrustedMessage(
                    f"signed for queue {message.queue!r}, delivered from {delivery.queue!r}"
                )
        except MessageDecodeError as exc:
            await self._refuse(delivery, exc)
            return
        if message.max_attempts is None:  # the task set no retries: this worker's default
            message.max_attempts = self.default_attempts
        if delivery.delivery_count > 1 and not await self._survives_crashes(message, delivery):
            return
        task = self.broker.tasks.get(message.task)
        if task is None:
            error = UnknownTask(message.task)
            event(log, logging.ERROR, "task.unknown", task_id=message.id, name=message.task)
            await self.settle.reply(message, "error", error_payload(error, with_traceback=False))
            reason = f"unknown task: {message.task!r}"
            await self.settle.patiently(message, delivery.dead_letter, reason)
            if self.watch is not None:
                self.watch.dead_lettered(message, delivery.queue, reason)
            return
        if _expired(message):
            await self.settle.expire(message, delivery)
            return
        if message.workflow is not None and not await self._first_copy(message, delivery):
            return
        if self.is_cancelled(message):
            await self.settle.cancelled(
                message,
                delivery,
                outcome_error(TaskCancelled, message.id, "cancelled before it started"),
            )
            return
        event(
            log,
            logging.DEBUG,
            "task.received",
            task_id=message.id,
            name=message.task,
            attempt=message.attempt,
        )
        if self.watch is not None:
            self.watch.received(message, delivery.queue)
        self.reserved[delivery] = message
        try:
            await self._execute(task, message, delivery)
        finally:
            self.reserved.pop(delivery, None)
            self.active.pop(delivery, None)

    async def _refuse(self, delivery: Delivery, error: MessageDecodeError) -> None:
        """Dead-letter a message that cannot be read or trusted, saying why; it never runs."""
        untrusted = isinstance(error, UntrustedMessage)
        name = "task.untrusted" if untrusted else "task.undecodable"
        event(log, logging.ERROR, name, queue=delivery.queue, error=error)
        reason = f"{'untrusted' if untrusted else 'undecodable'} message: {error}"
        if self.watch is not None:
            self.watch.dead_lettered(None, delivery.queue, reason)
        await self.handoff("-", "-", lambda: delivery.dead_letter(reason))

    async def _first_copy(self, message: TaskMessage, delivery: Delivery) -> bool:
        """Whether ``message`` is the copy of a workflow step to run; another copy
        of what a join's completer sent is acked and dropped."""
        verdict: list[bool] = []

        async def ask() -> None:
            verdict[:] = [await self.settle.advancer.admits(message)]

        await self.settle.patiently(message, ask)
        if verdict[0]:
            return True
        event(log, logging.INFO, "task.duplicate", task_id=message.id, name=message.task)
        await self.settle.patiently(message, delivery.ack)
        return False

    async def _survives_crashes(self, message: TaskMessage, delivery: Delivery) -> bool:
        """Apply the crash policy to a redelivered message; whether it may run here."""
        verdict, reason = self.crashes.judge(delivery.delivery_count)
        if verdict == "run":
            return True
        deaths = delivery.delivery_count - 1
        if verdict == "isolate":
            await self.settle.patiently(message, delivery.isolate)
            event(
                log,
                logging.WARNING,
                "task.isolated",
                task_id=message.id,
                name=message.task,
                deaths=deaths,
                note="its workers died while it ran; it runs next alone",
            )
            return False
        error = outcome_error(WorkerCrashed, message.id, reason)
        await self.settle.reply(message, "error", error_payload(error, with_traceback=False))
        await self.settle.patiently(message, delivery.dead_letter, reason)
        if self.watch is not None:
            self.watch.dead_lettered(message, delivery.queue, reason)
        event(
            log,
            logging.ERROR,
            "task.crashed",
            task_id=message.id,
            name=message.task,
            deaths=deaths,
            reason=reason,
        )
        return False

    async def _execute(self, task: AnyTask, message: TaskMessage, delivery: Delivery) -> None:
        outcome = await self._attempt(task, message, delivery)
        if isinstance(outcome, _Settled):  # sent back to wait for its cluster-wide limits
            return
        if outcome is None:  # it expired while it waited for its turn under the task's limits
            await self.settle.expire(message, delivery)
            return
        middleware = self.broker.middleware
        if middleware:
            await self._after_hooks("after_execute", message, outcome)
        status = outcome.status
        if status == "success":
            try:
                if task.kind == "stream":
                    await self.settle.reply(
                        message, "end", None, seq=outcome.value, settle=delivery
                    )
                else:
                    await self.settle.reply(message, "result", outcome.value, settle=delivery)
            except SerializationError as exc:
                outcome = Outcome("failure", error=exc, duration=outcome.duration)
                await self.settle.fail(message, delivery, outcome, "result could not be encoded")
                status = "failure"
            except WorkflowStuck as stuck:
                outcome = Outcome("failure", error=stuck.error, duration=outcome.duration)
                await self.settle.fail(message, delivery, outcome, "its workflow could not go on")
                status = "failure"
            else:
                if self.watch is not None:
                    self.watch.succeeded(message, outcome.duration, outcome.value)
                event(
                    log,
                    logging.INFO,
                    "task.succeeded",
                    task_id=message.id,
                    name=message.task,
                    attempt=message.attempt,
                    duration=outcome.duration,
                )
        elif status == "cancelled":
            assert outcome.error is not None
            await self.settle.cancelled(message, delivery, outcome.error, outcome.duration)
        elif status == "retry":
            await self.settle.retry(task, message, delivery, outcome)
            return
        else:
            what = "failed"
            if outcome.error is not None and not isinstance(outcome.error, SerializationError):
                what = judge(task.config, message, outcome.error) or what
            await self.settle.fail(message, delivery, outcome, what)
        if middleware:
            await self._after_hooks("on_result", message, outcome)

    async def _admit(
        self, task: AnyTask, message: TaskMessage, delivery: Delivery
    ) -> Admission | None:
        """Wait for the task's turn under its cluster-wide limits; ``None`` if the
        message was sent back to the broker or dead-lettered instead."""
        try:
            admission = await self.cluster.admit(task, message)
        except LimitKeyFailed as exc:
            event(log, logging.ERROR, "task.limit_key_failed", task_id=message.id, error=exc)
            await self.settle.reply(message, "error", error_payload(exc, with_traceback=False))
            reason = str(exc)[:_MAX_REASON]
            await self.settle.patiently(message, delivery.dead_letter, reason)
            if self.watch is not None:
                self.watch.dead_lettered(message, delivery.queue, reason)
            return None
        except OUTAGE as exc:
            admission = Deferral(1.0, f"the store could not be reached ({exc})")
        if isinstance(admission, Deferral):
            await self.settle.send_back(message, delivery, admission.delay)
            event(
                log,
                logging.DEBUG,
                "task.deferred",
                task_id=message.id,
                name=message.task,
                delay=admission.delay,
                reason=admission.reason,
            )
            return None
        return admission

    async def _after_hooks(self, hook: str, message: TaskMessage, outcome: Outcome) -> None:
        # The attempt has happened: a failing hook is logged, never a reason to run it again.
        for mw in reversed(self.broker.middleware):
            try:
                await getattr(mw, hook)(message, outcome)
            except Exception:
                log.exception("middleware %s.%s failed", type(mw).__name__, hook)

    async def _attempt(
        self, task: AnyTask, message: TaskMessage, delivery: Delivery
    ) -> Outcome | _Settled | None:
        """Run the task function once, under its limits, time limit and context.

        The worker's own limits come first, then the cluster-wide ones, so a task
        never holds a cluster-wide slot while it waits for this worker. Returns
        ``None``, without running it, when the message expired while it waited
        for its turn, and ``_SETTLED`` when its cluster-wide limits sent it back
        to the broker (or its ``limit_key`` failed, and it was dead-lettered).
        """
        limits = self.limits.get(task)
        started = time.perf_counter()
        root = message.workflow["root"] if message.workflow is not None else None
        self._track(message.id, delivery)  # a cancel reaches it while it waits, too
        if root is not None:  # and a cancel of its workflow
            self._track(root, delivery)
        config = task.config
        timeout = message.timeout or config.timeout or self.default_timeout
        admission: Admission | None = None
        try:
            async with limits.slot():
                if _expired(message):
                    return None
                if task.config.cluster_limited:
                    admission = await self._admit(task, message, delivery)
                    if admission is None:
                        return _SETTLED
                self._set_context(message)
                for mw in self.broker.middleware:
                    await mw.before_execute(message)
                if self.watch is not None:
                    self.watch.started(message)
                self.reserved.pop(delivery, None)
                self.active[delivery] = (message, time.time())
                started = time.perf_counter()  # its run, not its wait for its limits
                try:
                    calls = _calls(task, message)
                except SerializationError as exc:  # a message that does not fit: never retried
                    return Outcome("failure", error=exc, duration=time.perf_counter() - started)
                soft = None if config.soft_timeout is None else SoftDeadline(config.soft_timeout)
                running: Awaitable[Any]
                if isinstance(calls, tuple):  # one call: no layer between it and the task
                    running = self._call(task, message, *calls, soft)
                else:
                    running = self._call_each(task, message, calls, soft)
                if timeout is None:
                    value = await running
                else:
                    value = await run_with_deadline(message.id, running, timeout)
            return Outcome("success", value, duration=time.perf_counter() - started)
        except asyncio.CancelledError as exc:
            current = asyncio.current_task()
            if current is not None and current.cancelling() == 0:
                # Nobody cancelled this task: the function raised it (its soft time
                # limit, or a future it awaited was cancelled): an ordinary failure.
                retry = judge(config, message, exc) is None
                status: Literal["retry", "failure"] = "retry" if retry else "failure"
                return Outcome(status, error=exc, duration=time.perf_counter() - started)
            if not self.is_cancelled(message):
                raise  # the worker is shutting down: the delivery goes back to the queue
            if current is not None:
                current.uncancel()
            error = outcome_error(TaskCancelled, message.id, "cancelled while running")
            return Outcome("cancelled", error=error, duration=time.perf_counter() - started)
        except Exception as exc:
            retry = judge(config, message, exc) is None
            return Outcome(
                "retry" if retry else "failure", error=exc, duration=time.perf_counter() - started
            )
        finally:
            self._untrack(message.id, delivery)
            if root is not None:
                self._untrack(root, delivery)
            if admission is not None:
                await self.cluster.release(admission)

    def _set_context(self, message: TaskMessage) -> None:
        set_context(
            TaskContext(
                message.id,
                message.task,
                message.queue,
                message.attempt,
                message.max_attempts or None,  # 0, without limit: None
                message.headers,
                lambda value: self.settle.reply(message, "progress", value),
                self.broker.state,
            )
        )

    def _track(self, task_id: str, delivery: Delivery) -> None:
        deliveries = self.running.get(task_id)
        if deliveries is None:
            self.running[task_id] = {delivery}
        else:  # another message with this id runs too: a cancel must reach both
            deliveries.add(delivery)

    def _untrack(self, task_id: str, delivery: Delivery) -> None:
        deliveries = self.running.get(task_id)
        if deliveries is not None:
            deliveries.discard(delivery)
            if not deliveries:
                del self.running[task_id]

    async def _call_each(
        self,
        task: AnyTask,
        message: TaskMessage,
        calls: list[tuple[list[Any], dict[str, Any]]],
        soft: SoftDeadline | None,
    ) -> list[Any]:
        """Call the function once per item of a chunk; the list of results."""
        return [await self._call(task, message, args, kwargs, soft) for args, kwargs in calls]

    async def _call(
        self,
        task: AnyTask,
        message: TaskMessage,
        args: list[Any],
        kwargs: dict[str, Any],
        soft: SoftDeadline | None,
    ) -> Any:
        """Call the function; with a soft time limit, only its own code is limited,
        never aq's sending of a stream's items."""
        fn = task.fn
        if task.kind == "async":
            if soft is None:
                return await fn(*args, **kwargs)
            return await SoftLimited(fn(*args, **kwargs), soft)
        if task.kind == "sync":
            return await asyncio.to_thread(fn, *args, **kwargs)
        items = fn(*args, **kwargs)
        seq = 0
        async for item in items if soft is None else soft_stream(items, soft):
            await self.settle.reply(message, "item", item, seq=seq)
            seq += 1
        return seq


class _Settled:
    """What ``Executor._attempt`` returns for a message it settled without running."""


_SETTLED = _Settled()


def _expired(message: TaskMessage) -> bool:
    """Whether ``message``'s ``expires`` time has passed."""
    return message.expires is not None and time.time() > message.expires


_Calls = tuple[list[Any], dict[str, Any]] | list[tuple[list[Any], dict[str, Any]]]


def _calls(task: AnyTask, message: TaskMessage) -> _Calls:
    """The arguments of ``message``, converted to the function's annotations: one
    call's, or (a chunk of a workflow: ``each``) a list of calls'.

    Raises:
        aq.SerializationError: they do not fit the function.
    """
    convert = task.argument_converter
    flow = message.workflow
    if flow is None or not flow.get("each"):
        return convert(message.args, message.kwargs)
    items = message.args[0] if len(message.args) == 1 else None
    if not isinstance(items, list) or not all(isinstance(item, list) for item in items):
        raise SerializationError("a chunk's one argument must be a list of argument lists")
    return [convert(item, message.kwargs) for item in items]

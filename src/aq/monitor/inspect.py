"""Asking live workers, and telling them: ``broker.inspect`` and ``broker.control``.

A question or command goes out on the control channel to every worker (or,
with ``worker=``, is acted on by that one only); each worker it concerns
answers on this process's reply inbox, under the command's id. The caller
collects answers for ``timeout`` seconds (or until the one worker named has
answered) and gets them by worker id. No answer means no live worker heard
it in time: an empty dict, which ``aq inspect`` reports and exits non-zero on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

from aq.errors import ConfigurationError
from aq.message import ControlMessage, ControlOp, Reply, encode_control
from aq.options import parse_rate_limit

if TYPE_CHECKING:
    from aq.broker import Broker
    from aq.task import AnyTask

__all__ = ["QUESTIONS", "Answers", "Control", "Inspect"]

#: What ``broker.inspect`` may ask (the worker's side is aq.worker.remote).
QUESTIONS = ("ping", "stats", "active", "reserved", "registered")
DEFAULT_TIMEOUT = 1.0
#: Seconds a command stays valid after its answers stop being collected, for
#: clocks that differ between machines.
_SKEW = 1.0

#: Worker id -> its answer (a JSON object).
Answers = dict[str, dict[str, Any]]


class _Collector:
    """Gathers the answers to one command (a reply waiter)."""

    def __init__(self, worker: str | None) -> None:
        self.worker = worker
        self.answers: Answers = {}
        self.done = asyncio.Event()

    def feed(self, reply: Reply) -> None:
        if isinstance(reply.payload, dict):
            self.answers[reply.task_id] = reply.payload
            if self.worker is not None and reply.task_id == self.worker:
                self.done.set()


async def _send(
    broker: Broker,
    op: ControlOp,
    *,
    target: str = "",
    arg: str = "",
    worker: str | None,
    timeout: float,
) -> Answers:
    """Broadcast a command and collect the answers for ``timeout`` seconds."""
    if not timeout > 0:
        raise ConfigurationError(f"timeout must be a positive number of seconds, not {timeout!r}")
    address = await broker.reply_address()
    expires = time.time() + timeout + _SKEW  # never acted on by a worker that starts later
    command = ControlMessage(op, target, arg=arg, worker=worker, reply_to=address, expires=expires)
    collector = _Collector(worker)
    broker.watch(command.id, collector)  # held weakly: the collector lives in this frame
    await broker.transport.broadcast(encode_control(command, broker.codec))
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await collector.done.wait()
    return dict(collector.answers)


class Inspect:
    """Questions for live workers: ``await broker.inspect.stats()``.

    Each method returns the answers by worker id, collected for ``timeout``
    seconds (or until the worker named by ``worker`` answers); an empty dict
    when no live worker answered.
    """

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    async def ask(
        self, question: str, *, worker: str | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> Answers:
        """Ask ``question`` (one of :data:`QUESTIONS`).

        Raises:
            aq.ConfigurationError: an unknown question, or a timeout that is not positive.
        """
        if question not in QUESTIONS:
            raise ConfigurationError(
                f"unknown question {question!r}: ask one of {', '.join(QUESTIONS)}"
            )
        return await _send(self.broker, "inspect", arg=question, worker=worker, timeout=timeout)

    async def ping(self, *, worker: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> Answers:
        """Which workers are alive: ``{"ok": "pong"}`` from each."""
        return await self.ask("ping", worker=worker, timeout=timeout)

    async def stats(
        self, *, worker: str | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> Answers:
        """Each worker's figures: queues, concurrency, tasks started and done, memory, CPU."""
        return await self.ask("stats", worker=worker, timeout=timeout)

    async def active(
        self, *, worker: str | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> Answers:
        """The tasks running on each worker: ``{"tasks": [{"id", "name", "started_at"...}]}``."""
        return await self.ask("active", worker=worker, timeout=timeout)

    async def reserved(
        self, *, worker: str | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> Answers:
        """The tasks each worker has taken and that wait for their turn (their limits)."""
        return await self.ask("reserved", worker=worker, timeout=timeout)

    async def registered(
        self, *, worker: str | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> Answers:
        """The tasks each worker runs, with their limits as they are now."""
        return await self.ask("registered", worker=worker, timeout=timeout)


class Control:
    """Commands for live workers: ``await broker.control.rate_limit(send_email, "10/s")``."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    async def rate_limit(
        self,
        task: str | AnyTask,
        rate: str | None,
        *,
        worker: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Answers:
        """Limit ``task`` to ``rate`` (``"10/s"``; ``None`` for no limit) on the live
        workers that run it, until they restart (as Celery's ``rate_limit`` does).

        Raises:
            aq.ConfigurationError: ``rate`` is not a rate limit.
        """
        if rate is not None:
            parse_rate_limit(rate)  # a bad rate fails here, not in every worker
        name = task if isinstance(task, str) else task.name
        return await _send(
            self.broker, "rate_limit", target=name, arg=rate or "", worker=worker, timeout=timeout
        )

    async def shutdown(
        self, *, worker: str | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> Answers:
        """Stop the live workers (or the one named) gracefully; their supervisors
        do not replace them."""
        return await _send(self.broker, "shutdown", worker=worker, timeout=timeout)

    async def cancel(self, task_id: str) -> None:
        """Cancel task ``task_id`` wherever it is (as ``broker.cancel``)."""
        await self.broker.cancel(task_id)

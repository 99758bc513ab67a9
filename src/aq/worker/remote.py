"""A worker's answers to ``aq inspect`` and ``aq control``.

Commands come on the control channel (:class:`~aq.message.ControlMessage`)
to every worker; one that names another worker (``worker``) is ignored
here. :class:`Remote` acts on those meant for this worker and sends its
answer, a plain JSON object, to the asker's reply address: ``ping``,
``stats``, ``active``, ``reserved`` and ``registered`` describe the worker;
``rate_limit`` changes a task's rate limit here until the worker restarts;
``shutdown`` stops the worker gracefully (and its supervisor does not start
it again). An answer that cannot be sent is logged, never raised: the
control listener must live on.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from aq.errors import ConfigurationError
from aq.logs import event
from aq.message import ControlMessage, Reply, TaskMessage, encode_reply
from aq.monitor.inspect import QUESTIONS
from aq.options import parse_rate_limit

if TYPE_CHECKING:
    from aq.worker.worker import Worker

__all__ = ["Remote"]

log = logging.getLogger("aq.worker")


class Remote:
    """Answers the inspect and control commands meant for ``worker``."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def concerns(self, command: ControlMessage) -> bool:
        """Whether ``command`` is for this worker, and still stands."""
        if command.expires is not None and command.expires < time.time():
            return False
        return command.worker is None or command.worker == self.worker.id

    async def act(self, command: ControlMessage) -> None:
        """Carry out ``command`` (inspect, rate_limit or shutdown) and answer it;
        never raises (it runs on its own, beside the control listener)."""
        if command.op == "inspect":
            answer = self._inspect(command.arg)
        elif command.op == "rate_limit":
            answer = self._rate_limit(command.task_id, command.arg)
        else:
            answer = {"ok": "shutting down"}
        level = logging.DEBUG if command.op == "inspect" else logging.INFO
        event(log, level, "control.received", op=command.op, arg=command.arg or "-")
        await self._answer(command, answer)
        if command.op == "shutdown":
            self.worker.request_shutdown()

    def _inspect(self, question: str) -> dict[str, Any]:
        reporter, executor = self.worker.reporter, self.worker.executor
        if question == "ping":
            return {"ok": "pong"}
        if question == "stats":
            return reporter.stats()
        if question == "registered":
            return {"tasks": reporter.registered()}
        if question == "active":
            running = executor.active.values()
            return {"tasks": [self._describe(m, started_at=t) for m, t in running]}
        if question == "reserved":
            return {"tasks": [self._describe(m) for m in executor.reserved.values()]}
        return {"error": f"unknown question {question!r}: ask one of {', '.join(QUESTIONS)}"}

    def _describe(self, message: TaskMessage, **fields: Any) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "id": message.id,
            "name": message.task,
            "queue": message.queue,
            "attempt": message.attempt,
        }
        entry.update(fields)
        task = self.worker.broker.tasks.get(message.task)
        if task is not None and task.config.event_data:
            entry["args"] = message.args
            entry["kwargs"] = message.kwargs
        return entry

    def _rate_limit(self, name: str, rate: str) -> dict[str, Any]:
        task = self.worker.broker.tasks.get(name)
        if task is None or task.config.queue not in self.worker.queues:
            return {"error": f"this worker does not run a task named {name!r}"}
        try:
            limit = parse_rate_limit(rate) if rate else None
        except ConfigurationError as exc:
            return {"error": str(exc)}
        self.worker.limits.set_rate(task, limit)
        return {"ok": f"rate limit of {name} set to {rate or 'none'}"}

    async def _answer(self, command: ControlMessage, answer: dict[str, Any]) -> None:
        if command.reply_to is None:
            return
        answer.setdefault("worker", self.worker.id)
        reply = Reply(command.id, self.worker.id, "result", answer)
        try:
            body = encode_reply(reply, self.worker.broker.codec)
            await self.worker.broker.transport.send_reply(command.reply_to, body)
        except Exception as exc:
            event(log, logging.WARNING, "control.unanswered", op=command.op, error=exc)

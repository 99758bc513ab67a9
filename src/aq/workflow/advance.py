"""Carrying a workflow on in the worker, once one of its steps has its outcome.

On success, :meth:`Advancer.succeeded` starts the step's ``link`` callbacks
and whatever its result goes on to (the next step of a chain, a place in a
chord's join, a member's or the workflow's result for the handle) before the
executor acks the message; the replies for the handle are handed back for the
executor to send with the ack. On failure for good, :meth:`Advancer.failed`
names the step in the error for the handle (under the member it belongs to,
if the handle waits on a group), and starts the ``link_error`` callbacks: the
step's own, and those of the body of any chord the step is a member of (once
per chord). Nothing after the failed step runs: a chord whose member failed
never completes its join, and its state expires.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, TypedDict

from aq.errors import AQError, BrokerUnavailable, ConnectionLost, MessageDecodeError
from aq.logs import event
from aq.message import Reply, TaskMessage
from aq.workflow.driver import Driver
from aq.workflow.steps import Instruction, Outcome, Planner
from aq.workflow.wire import Flow, Node, flow_of

if TYPE_CHECKING:
    from aq.broker import Broker

__all__ = ["Advancer", "Failure"]

log = logging.getLogger("aq.worker")
OUTAGE = (BrokerUnavailable, ConnectionLost)
#: What a link_error callback is given of the error, at most (characters).
_MAX_MESSAGE = 2000
_MAX_TRACEBACK = 8000


class Failure(TypedDict):
    """What a ``link_error`` callback is given: the step that failed, and how."""

    task_id: str
    task: str
    step: str
    type: str
    message: str
    traceback: str


class Advancer:
    """Carries workflows on for one worker; see the module docstring."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    async def admits(self, message: TaskMessage) -> bool:
        """Whether ``message`` may run: ``False`` for a second copy of what a join's
        completer sent (see ``once`` in :mod:`aq.workflow.wire`), which is dropped.

        Raises:
            aq.BrokerError: the store cannot be reached.
        """
        once = (message.workflow or {}).get("once")
        if once is None:
            return True
        store = self.broker.require_store("a chord")
        key, mine = f"once:{message.id}", once.encode()
        if await store.set_if_absent(key, mine, ttl=self.broker.workflow_ttl):
            return True
        return await store.get(key) in (mine, None)

    async def succeeded(
        self, message: TaskMessage, value: Any, send: Callable[[Reply], Awaitable[None]]
    ) -> list[Reply]:
        """Start what ``message``'s result ``value`` goes on to, then its ``link``
        callbacks; the replies for the handle, to send with the ack. A reply that
        a completed join brings is handed to ``send`` at once instead: it must
        reach the handle before the join is marked done.

        Everything is encoded before anything is sent, so a step whose next
        message cannot be sent fails without having started its callbacks.

        Raises:
            aq.SerializationError: the result or a message cannot be encoded.
            aq.MessageDecodeError: a node in the workflow fields is malformed.
            aq.ConfigurationError: a join needs a store and there is none.
            aq.BrokerError: the broker or store cannot be reached.
        """
        flow = flow_of(message.workflow or {})
        planner = Planner(flow.root, message.reply_to, message.correlation_id, message.content_type)
        replies: list[Reply] = []

        async def outcome(found: Outcome, durable: bool) -> None:
            reply = self._reply(message, "result", found.value, found.member)
            if durable:
                await send(reply)
            else:
                replies.append(reply)

        links = self._callbacks(flow)
        try:
            if flow.link:
                await links.stage(_starts(links.planner, flow.link, value, message.id, "link"))
            await Driver(self.broker, planner, outcome).run(
                planner.proceed(value, flow.then, message.id)
            )
        except AQError:
            raise
        except (TypeError, ValueError, KeyError) as exc:  # a node the checks let through
            raise MessageDecodeError(f"malformed workflow fields: {exc!r}") from exc
        await links.flush()
        return replies

    async def failed(self, message: TaskMessage, payload: dict[str, Any]) -> Reply:
        """Start the ``link_error`` callbacks of ``message``, which failed for good
        with the error ``payload``; the error reply for the handle, naming the step.
        Callbacks that cannot be started are logged: the reply goes all the same.

        Raises:
            aq.BrokerError: the broker or store cannot be reached.
        """
        flow = flow_of(message.workflow or {})
        payload = {**payload, "step": flow.step, "task_id": message.id}
        member = next((f.get("member") for f in flow.then if "member" in f), None)
        reply = self._reply(message, "error", payload, member)
        failure = Failure(
            task_id=message.id,
            task=message.task,
            step=flow.step,
            type=str(payload.get("type", "")),
            message=_clip(str(payload.get("message", "")), _MAX_MESSAGE),
            traceback=_clip(str(payload.get("traceback", "")), _MAX_TRACEBACK),
        )
        try:
            errbacks = list(flow.link_error) + await self._chord_errbacks(message, flow)
            if errbacks:
                driver = self._callbacks(flow)
                starts = _starts(driver.planner, errbacks, failure, message.id, "link_error")
                await driver.run(starts)
        except OUTAGE:
            raise
        except Exception as exc:  # a callback that cannot be sent must not lose the reply
            event(
                log,
                logging.ERROR,
                "workflow.errback_failed",
                task_id=message.id,
                step=flow.step,
                error=exc,
            )
        return reply

    async def _chord_errbacks(self, message: TaskMessage, flow: Flow) -> list[Node]:
        """The ``link_error`` callbacks of the bodies of the chords this step is a
        member of, for the first of their members to fail (which claims them under
        its own id, so its own redelivery, or a retry after an outage, still
        starts them)."""
        found: list[Node] = []
        then = flow.then
        for i, frame in enumerate(then[:-1]):
            after = then[i + 1]
            if "join" not in frame or "chain" not in after:
                continue
            body = after["chain"][0]
            if not isinstance(body, dict) or not body.get("link_error"):
                continue
            store = self.broker.require_store("a chord")
            key, mine = f"join-failed:{frame['join']}", message.id.encode()
            if await store.set_if_absent(key, mine, ttl=self.broker.workflow_ttl) or (
                await store.get(key) == mine
            ):
                found.extend(body["link_error"])
        return found

    def _callbacks(self, flow: Flow) -> Driver:
        """A driver for callbacks: their outcomes go to no handle (they share the
        workflow's root, so cancelling it stops them too)."""
        return Driver(self.broker, Planner(flow.root, None, None), _ignore)

    @staticmethod
    def _reply(message: TaskMessage, kind: Any, payload: Any, member: int | None) -> Reply:
        return Reply(message.correlation_id or message.id, message.id, kind, payload, 0, member)


async def _ignore(found: Outcome, durable: bool) -> None:
    """Callbacks report to no one."""


def _starts(
    planner: Planner, nodes: list[Node], value: Any, parent: str, what: str
) -> Iterator[Instruction]:
    """Start each callback of ``nodes`` with ``value``."""
    for index, node in enumerate(nodes):
        yield from planner.start(node, value, [], parent, f"{what} {index + 1}")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 20] + " ... (cut short)"

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

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TypedDict

from aq.message import Reply, TaskMessage
from aq.workflow.driver import Driver
from aq.workflow.steps import Instruction, Outcome, Planner
from aq.workflow.wire import Flow, Node, flow_of

if TYPE_CHECKING:
    from aq.broker import Broker

__all__ = ["Advancer", "Failure"]


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

    async def succeeded(self, message: TaskMessage, value: Any) -> list[Reply]:
        """Start what ``message``'s result ``value`` goes on to; the replies for
        the handle.

        Raises:
            aq.SerializationError: the result or a message cannot be encoded.
            aq.MessageDecodeError: a node in the workflow fields is malformed.
            aq.ConfigurationError: a join needs a store and there is none.
            aq.BrokerError: the broker or store cannot be reached.
        """
        flow = flow_of(message.workflow or {})
        planner = Planner(flow.root, message.reply_to, message.correlation_id)
        replies: list[Reply] = []

        async def outcome(found: Outcome) -> None:
            replies.append(self._reply(message, "result", found.value, found.member))

        if flow.link:
            await self._callbacks(flow, flow.link, value, message.id, "link")
        driver = Driver(self.broker, planner, outcome)
        await driver.run(planner.proceed(value, flow.then, message.id))
        return replies

    async def failed(self, message: TaskMessage, payload: dict[str, Any]) -> Reply:
        """Start the ``link_error`` callbacks of ``message``, which failed for good
        with the error ``payload``; the error reply for the handle, naming the step.

        Raises:
            aq.MessageDecodeError: a node in the workflow fields is malformed.
            aq.BrokerError: the broker or store cannot be reached.
        """
        flow = flow_of(message.workflow or {})
        payload = {**payload, "step": flow.step, "task_id": message.id}
        failure = Failure(
            task_id=message.id,
            task=message.task,
            step=flow.step,
            type=str(payload.get("type", "")),
            message=str(payload.get("message", "")),
            traceback=str(payload.get("traceback", "")),
        )
        errbacks = list(flow.link_error) + await self._chord_errbacks(flow)
        if errbacks:
            await self._callbacks(flow, errbacks, failure, message.id, "link_error")
        member = next((f["member"] for f in flow.then if "member" in f), None)
        return self._reply(message, "error", payload, member)

    async def _chord_errbacks(self, flow: Flow) -> list[Node]:
        """The ``link_error`` callbacks of the bodies of the chords this step is a
        member of, for the first of their members to fail."""
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
            first = await store.set_if_absent(
                f"join-failed:{frame['join']}", b"1", ttl=self.broker.workflow_ttl
            )
            if first:
                found.extend(body["link_error"])
        return found

    async def _callbacks(
        self, flow: Flow, nodes: list[Node], value: Any, parent: str, what: str
    ) -> None:
        """Start each callback with ``value``; their outcomes go to no handle
        (they share the workflow's root, so cancelling it stops them too)."""
        planner = Planner(flow.root, None, None)

        def starts() -> Iterator[Instruction]:
            for index, node in enumerate(nodes):
                yield from planner.start(node, value, [], parent, f"{what} {index + 1}")

        await Driver(self.broker, planner, _ignore).run(starts())

    @staticmethod
    def _reply(message: TaskMessage, kind: Any, payload: Any, member: int | None) -> Reply:
        return Reply(message.correlation_id or message.id, message.id, kind, payload, 0, member)


async def _ignore(found: Outcome) -> None:
    """Callbacks report to no one."""

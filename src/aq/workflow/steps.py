"""What a workflow does next: nodes and frames turned into messages and joins.

Starting a node and carrying a value on through frames are pure work: no
I/O, only the decisions. :class:`Planner` makes them and yields them as
instructions, in order, lazily (a map over 100,000 items is never all in
memory): a :class:`~aq.message.TaskMessage` to publish, a :class:`JoinPart`
to record in the store, a :class:`GroupSize` learned after a lazy group's
last member, an :class:`Outcome` for the caller's handle. The producer's
``kiq()`` and a worker finishing a step both drive a planner with
:mod:`aq.workflow.driver`, so the two start nodes the same way.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from aq.errors import MessageDecodeError
from aq.message import TaskMessage
from aq.workflow.wire import Flow, Frame, Node, derive_id, node_kind

__all__ = ["NO_INPUT", "GroupSize", "Instruction", "JoinPart", "Outcome", "Planner"]


class _NoInput:
    """The input of a workflow's first step: nothing is passed to it."""

    def __repr__(self) -> str:
        return "NO_INPUT"


NO_INPUT: Any = _NoInput()


@dataclass(frozen=True, slots=True)
class JoinPart:
    """Record ``value`` as part ``index`` of the join ``join`` (size ``size`` if
    known); if that completes it, carry the parts on through ``then``."""

    join: str
    index: int | None
    value: Any
    size: int | None
    then: list[Frame]


@dataclass(frozen=True, slots=True)
class GroupSize:
    """A lazily started group has ``size`` members: tell its join (``join``,
    with what comes ``then``) or, for the group the handle waits on
    (``join`` is ``None``), the handle."""

    join: str | None
    size: int
    then: list[Frame]


@dataclass(frozen=True, slots=True)
class Outcome:
    """A value for the caller's handle: the workflow's result, or (``member``
    set) the result of one member of the group it waits on."""

    value: Any
    member: int | None = None


Instruction = TaskMessage | JoinPart | GroupSize | Outcome


class Planner:
    """Plans the steps of one workflow: everything it starts shares the root,
    reply address and correlation id given here, and the content type (the
    producer's, so that the replies its last steps send can be read there)."""

    __slots__ = ("content_type", "correlation_id", "reply_to", "root")

    def __init__(
        self,
        root: str,
        reply_to: str | None,
        correlation_id: str | None,
        content_type: str | None = None,
    ) -> None:
        self.root = root
        self.reply_to = reply_to
        self.correlation_id = correlation_id
        self.content_type = content_type

    def start(
        self,
        node: Node,
        value: Any,
        then: list[Frame],
        parent: str,
        label: str,
        task_id: str | None = None,
    ) -> Iterator[Instruction]:
        """Start ``node`` with ``value`` as its input (``NO_INPUT``: none), its
        outcome going on to ``then``. ``parent`` and ``label`` name what starts
        it: the ids derive from both, the step names from the label. A task
        node started with ``task_id`` takes that id instead.

        Raises:
            aq.MessageDecodeError: the node is malformed (from a worker's message).
        """
        kind = node_kind(node)
        if kind == "task":
            yield self._message(node, value, then, task_id or derive_id(parent, label), label)
        elif kind == "chain":
            steps: list[Node] = node["chain"]
            if not steps:  # an empty chain passes its input on
                yield from self.proceed(None if value is NO_INPUT else value, then, parent)
                return
            rest = [{"chain": steps[1:]}, *then] if len(steps) > 1 else then
            yield from self.start(steps[0], value, rest, parent, _step(label, 0))
        elif kind == "group":
            yield from self._group(node, node["group"], value, then, parent, label)
        else:
            body_then = [{"chain": [node["body"]]}, *then]
            yield from self._group(node, node["chord"], value, body_then, parent, label)

    def _group(
        self,
        node: Node,
        members: Iterable[Node],
        value: Any,
        then: list[Frame],
        parent: str,
        label: str,
    ) -> Iterator[Instruction]:
        group = derive_id(parent, label)
        direct = not then  # its outcome is the workflow's: members report to the handle
        size = len(members) if isinstance(members, list) else None
        count = 0
        for index, member in enumerate(members):
            frame = {"member": index} if direct else {"join": group, "index": index, "size": size}
            yield from self.start(member, value, [frame, *then], group, _member(node, label, index))
            count = index + 1
        if count == 0:
            yield from self.proceed([], then, group)
        elif size is None:
            yield GroupSize(None if direct else group, count, then)

    def proceed(self, value: Any, then: list[Frame], parent: str) -> Iterator[Instruction]:
        """Carry ``value``, the outcome of the step ``parent``, on through ``then``."""
        if not then:
            yield Outcome(value)
            return
        frame, rest = then[0], then[1:]
        if "chain" in frame:
            steps = frame["chain"]
            if len(steps) > 1:
                rest = [{"chain": steps[1:]}, *rest]
            yield from self.start(steps[0], value, rest, parent, "next")
        elif "member" in frame:
            yield Outcome(value, frame["member"])
        elif "join" in frame:
            yield JoinPart(frame["join"], frame["index"], value, frame.get("size"), rest)
        else:
            raise MessageDecodeError(f"unknown wf frame with keys {sorted(frame)}")

    def _message(
        self, node: Node, value: Any, then: list[Frame], task_id: str, label: str
    ) -> TaskMessage:
        args = list(node.get("args", ()))
        if value is not NO_INPUT and not node.get("immutable"):
            args.insert(0, value)
        now = time.time()
        delay, eta = node.get("delay"), node.get("eta")
        expires, expires_at = node.get("expires"), node.get("expires_at")
        flow = Flow(
            self.root,
            node.get("label") or f"{label} ({node['task']})",
            then,
            node.get("link", []),
            node.get("link_error", []),
            bool(node.get("each")),
        )
        return TaskMessage(
            id=task_id,
            task=node["task"],
            queue=node["queue"],
            args=args,
            kwargs=dict(node.get("kwargs", {})),
            headers=dict(node.get("headers", {})),
            max_attempts=node.get("max_attempts"),
            priority=node.get("priority", 0),
            eta=now + delay if delay else eta,
            expires=now + expires if expires is not None else expires_at,
            timeout=node.get("timeout"),
            reply_to=self.reply_to,
            correlation_id=self.correlation_id,
            created_at=now,
            workflow=flow.to_dict(),
            content_type=self.content_type,
        )


def _step(label: str, index: int) -> str:
    return f"{label}, step {index + 1}" if label else f"chain step {index + 1}"


def _member(node: Node, label: str, index: int) -> str:
    what = "chord member" if "chord" in node else "group member"
    return f"{label}, {what} {index + 1}" if label else f"{what} {index + 1}"

"""Sending a workflow from the producer: ``await canvas.kiq()``.

The canvas becomes JSON nodes (checked: arguments that do not fit, or cannot
be encoded, fail here naming the step), the handle is registered under a new
root id (the workflow's correlation id, which every step replies to and
``cancel()`` stops), and a :class:`~aq.workflow.steps.Planner` starts the
first steps through a :class:`~aq.workflow.driver.Driver`: a group's members
in bulk, a map's as its items come. If sending fails part way, what was sent
is cancelled before the error is raised.
"""

from __future__ import annotations

import contextlib
from typing import Any

from aq.errors import AQError
from aq.handle import TaskHandle
from aq.message import Reply, new_id
from aq.replies import ResultWaiter
from aq.workflow.canvas import Canvas, Signature
from aq.workflow.driver import Driver
from aq.workflow.handles import GroupHandle, GroupWaiter
from aq.workflow.steps import NO_INPUT, Outcome, Planner
from aq.workflow.wire import Node

__all__ = ["launch"]


async def launch(canvas: Canvas[Any, Any]) -> TaskHandle[Any]:
    """Send ``canvas``; see the module docstring and :meth:`Canvas.kiq`."""
    broker = canvas.broker
    node = canvas.to_node("", False, True)
    if _joins(node, last=True):
        broker.require_store("a chord (or a group followed by more steps)")
    reply_to = broker.listening_address or await broker.reply_address()
    given = (
        canvas.send_options.task_id
        if isinstance(canvas, Signature) and canvas.send_options
        else None
    )
    root = given or new_id()
    name = _name(canvas)
    final = canvas.ends_in_group()
    waiter: ResultWaiter
    if final is not None:
        waiter = GroupWaiter(_final_size(node))
        handle: TaskHandle[Any] = GroupHandle(broker, root, name, waiter, final.member_converter())
        broker.watch(root, waiter)
    else:  # shared with any other handle of this id, as a plain task's is
        waiter = broker.register_waiter(root)
        handle = TaskHandle(broker, root, name, waiter, canvas.converter())

    async def outcome(found: Outcome, durable: bool) -> None:  # an empty group's, at once
        waiter.feed(Reply(root, root, "result", found.value, member=found.member))

    planner = Planner(root, reply_to, root)
    on_size = waiter.set_size if isinstance(waiter, GroupWaiter) else None
    driver = Driver(broker, planner, outcome, on_size)
    task_id = root if "task" in node else None
    try:
        await driver.run(planner.start(node, NO_INPUT, [], root, "", task_id))
    except BaseException:
        if driver.attempted:
            with contextlib.suppress(AQError):
                await broker.cancel(root)
        raise
    return handle


def _joins(node: Node, last: bool) -> bool:
    """Whether the workflow ``node`` counts a group in the store: a chord, or a
    group whose results go on to more steps (``last``: nothing comes after it)."""
    if "task" in node:
        return any(_joins(n, True) for n in (*node.get("link", ()), *node.get("link_error", ())))
    if "chain" in node:
        steps = node["chain"]
        return any(_joins(step, last and i == len(steps) - 1) for i, step in enumerate(steps))
    if "chord" in node or not last:
        return True
    members = node["group"]
    return isinstance(members, list) and any(_joins(member, False) for member in members)


def _final_size(node: Node) -> int | None:
    """The number of members of the group that ends the workflow ``node``, if
    known before it is sent (an empty one that comes after other steps reports
    its ``[]`` when they are done, as any outcome)."""
    top = True
    while True:
        if "chain" in node:
            top, node = top and len(node["chain"]) == 1, node["chain"][-1]
        elif "chord" in node:
            top, node = False, node["body"]
        else:
            members = node.get("group")
            if not isinstance(members, list) or (not members and not top):
                return None
            return len(members)


def _name(canvas: Canvas[Any, Any]) -> str:
    text = repr(canvas)
    return text if len(text) <= 80 else text[:77] + "..."

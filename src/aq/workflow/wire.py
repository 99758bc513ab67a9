"""The workflow fields of the envelope: nodes, frames, and the ids derived from them.

A workflow travels with its messages as plain JSON (docs/protocol.md,
"Workflows"), so any worker can carry it on and a worker in another language
could take part. Three shapes make it up:

* a **node** is a part of a workflow not started yet: a task call
  (``{"task": ...}``), a chain (``{"chain": [node, ...]}``), a group
  (``{"group": [node, ...]}``) or a chord (``{"chord": [node, ...], "body": node}``);
* a **frame** says what the outcome of a step goes on to: the rest of a chain
  (``{"chain": [node, ...]}``), a place in a group counted in the store
  (``{"join": id, "index": i, "size": n}``), or a place in the group whose
  members report to the caller's handle (``{"member": i}``);
* the **flow** (``wf`` in a task message) holds the workflow's root id (its
  handle's id, which cancels it), the step's name for errors, its frames
  (innermost first), the callbacks of this one call (``link``,
  ``link_error``), ``each`` for a chunk (the message's one argument is a
  list of argument lists, and the task runs once for each), and ``once`` for
  what a join's completer started: the id of this copy. A completer that dies
  after it sent what comes next, before it recorded that, is replaced by its
  redelivery, which sends it again under the same message ids and a new copy
  id; the first copy to reach a worker claims the message id
  (``once:<id>`` in the store), and a worker given another copy drops it.

Ids of what a step starts are derived from the step's own id
(:func:`derive_id`), so a step run again after a crash starts what it started
the first time under the same ids, and a group counts each member once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aq.errors import MessageDecodeError

__all__ = ["Flow", "Frame", "Node", "derive_id", "flow_of", "node_kind", "parse_flow"]

Node = dict[str, Any]
Frame = dict[str, Any]

_NODE_KINDS = ("task", "chain", "group", "chord")


def derive_id(parent: str, part: str) -> str:
    """The id of ``part`` started by the step ``parent``: 32 hex digits, the same
    every time the step runs."""
    return hashlib.blake2b(f"{parent}/{part}".encode(), digest_size=16).hexdigest()


@dataclass(slots=True)
class Flow:
    """The ``wf`` field of a task message; see the module docstring."""

    root: str
    step: str
    then: list[Frame] = field(default_factory=list)
    link: list[Node] = field(default_factory=list)
    link_error: list[Node] = field(default_factory=list)
    each: bool = False
    once: str | None = None

    def to_dict(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"root": self.root, "step": self.step, "then": self.then}
        if self.each:
            obj["each"] = True
        if self.once is not None:
            obj["once"] = self.once
        if self.link:
            obj["link"] = self.link
        if self.link_error:
            obj["link_error"] = self.link_error
        return obj


def parse_flow(obj: dict[str, Any]) -> Flow:
    """The flow of a decoded ``wf`` field, its frames and nodes checked.

    Raises:
        aq.MessageDecodeError: a field is missing or has the wrong shape.
    """
    root, step, then = obj.get("root"), obj.get("step"), obj.get("then", [])
    if not isinstance(root, str) or not root or not isinstance(step, str):
        raise MessageDecodeError("wf needs a non-empty string root and a string step")
    if not isinstance(then, list):
        raise MessageDecodeError("wf.then must be a list of frames")
    for frame in then:
        _check_frame(frame)
    links = []
    for name in ("link", "link_error"):
        nodes = obj.get(name, [])
        if not isinstance(nodes, list):
            raise MessageDecodeError(f"wf.{name} must be a list of nodes")
        for node in nodes:
            node_kind(node)
        links.append(nodes)
    each, once = obj.get("each", False), obj.get("once")
    if type(each) is not bool:
        raise MessageDecodeError("wf.each must be true or false")
    if once is not None and (not isinstance(once, str) or not once):
        raise MessageDecodeError("wf.once must be a non-empty string")
    return Flow(root, step, then, links[0], links[1], each, once)


def flow_of(obj: dict[str, Any]) -> Flow:
    """The flow of a ``wf`` field that :func:`parse_flow` checked already (every
    decoded message's was), without checking it again."""
    return Flow(
        obj["root"],
        obj["step"],
        obj.get("then") or [],
        obj.get("link", []),
        obj.get("link_error", []),
        obj.get("each", False),
        obj.get("once"),
    )


def _check_frame(frame: object) -> None:
    if not isinstance(frame, dict):
        raise MessageDecodeError("a wf frame must be an object")
    if "chain" in frame:
        steps = frame["chain"]
        if not isinstance(steps, list) or not steps:
            raise MessageDecodeError("a chain frame needs a non-empty list of nodes")
        for node in steps:
            node_kind(node)
    elif "join" in frame:
        index, size = frame.get("index"), frame.get("size")
        if not isinstance(frame["join"], str) or type(index) is not int or index < 0:
            raise MessageDecodeError("a join frame needs a string join id and an index")
        if size is not None and (type(size) is not int or size <= index):
            raise MessageDecodeError("a join frame's size must be an int above its index")
    elif "member" in frame:
        if type(frame["member"]) is not int or frame["member"] < 0:
            raise MessageDecodeError("a member frame needs a non-negative int")
    else:
        raise MessageDecodeError(f"unknown wf frame with keys {sorted(frame)}")


_NUMBER = (int, float)
#: A task node's optional fields and the JSON types each may have (``None``: absent).
_TASK_FIELDS: dict[str, tuple[type, ...]] = {
    "args": (list,),
    "kwargs": (dict,),
    "headers": (dict,),
    "label": (str,),
    "immutable": (bool,),
    "each": (bool,),
    "max_attempts": (int,),
    "priority": (int,),
    "timeout": _NUMBER,
    "delay": _NUMBER,
    "eta": _NUMBER,
    "expires": _NUMBER,
    "expires_at": _NUMBER,
    "link": (list,),
    "link_error": (list,),
}


def _check_task_node(node: dict[str, Any]) -> None:
    if not isinstance(node["task"], str) or not isinstance(node.get("queue"), str):
        raise MessageDecodeError("a task node needs string task and queue fields")
    for name, types in _TASK_FIELDS.items():
        value = node.get(name)
        if value is not None and (type(value) not in types):
            raise MessageDecodeError(f"a task node's {name} has the wrong type: {value!r:.40}")
    if not node.get("max_attempts", 0) >= 0 or not 0 <= node.get("priority", 0) <= 9:
        raise MessageDecodeError("a task node's max_attempts or priority is out of range")
    for name in ("link", "link_error"):
        for callback in node.get(name, ()):
            node_kind(callback)


def node_kind(node: object) -> str:
    """Which kind of node ``node`` is (``task``, ``chain``, ``group``, ``chord``),
    its shape checked one level deep (the rest is checked when it starts).

    Raises:
        aq.MessageDecodeError: it is no node.
    """
    if not isinstance(node, dict):
        raise MessageDecodeError("a wf node must be an object")
    for kind in _NODE_KINDS:
        if kind in node:
            break
    else:
        raise MessageDecodeError(f"unknown wf node with keys {sorted(node)}")
    if kind == "task":
        _check_task_node(node)
    elif not isinstance(node[kind], list | Iterator):  # an iterator: a map sent lazily
        raise MessageDecodeError(f"a {kind} node must hold a list of nodes")
    elif kind == "chord":
        node_kind(node.get("body"))
    return kind

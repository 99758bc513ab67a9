"""The members of ``task.map``, ``task.starmap`` and ``task.chunks``.

An :class:`Items` is a group's members not made yet: one call of a task per
item, or per chunk of ``n`` items (one message whose worker calls the task for
each in turn: ``each`` in the workflow fields). They are made one by one as the
group is sent, each checked as a signature would be, so a map over a generator
of 100,000 items never holds them all.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from aq.coerce import Converter
from aq.errors import ConfigurationError
from aq.workflow.canvas import Signature, label_of
from aq.workflow.wire import Node

if TYPE_CHECKING:
    from aq.task import AnyTask

__all__ = ["Items"]


class Items:
    """The members of ``task.map``, ``starmap`` or ``chunks``: made one by one as
    the group is sent, so a map over a generator never holds every item."""

    __slots__ = ("items", "mode", "size", "task")

    def __init__(self, task: AnyTask, items: Iterable[Any], mode: str, size: int = 1) -> None:
        if mode == "chunks" and (type(size) is not int or size < 1):
            raise ConfigurationError(f"chunks need a whole number of items above 0, not {size!r}")
        self.task = task
        self.items = items
        self.mode = mode
        self.size = size

    def __repr__(self) -> str:
        return f"{self.task.name}.{self.mode}(...)"

    def converter(self) -> Converter | None:
        convert = self.task.return_converter
        if self.mode != "chunks" or convert is None:
            return convert
        return lambda values: [None if v is None else convert(v) for v in values]

    def nodes(self, label: str) -> Iterator[Node]:
        task = self.task
        if self.mode != "chunks":
            for index, args in enumerate(self._calls()):
                signature: Signature[Any, Any] = Signature(task, args, {}, True)
                yield signature.to_node(label_of(label, f"item {index + 1}"), False, False)
            return
        template = Signature(task, (), {}, True, check=False).to_node("", False, False, False)
        for index, (chunk,) in enumerate(self._calls()):
            where = label_of(label, f"chunk {index + 1}")
            for args in chunk:  # each call of the chunk must fit, and be encodable
                Signature(task, tuple(args), {}, True).to_node(where, False, False)
            yield {**template, "args": [chunk], "each": True, "label": f"{where} ({task.name})"}

    def _calls(self) -> Iterator[tuple[Any, ...]]:
        if self.mode == "map":
            for item in self.items:
                yield (item,)
        elif self.mode == "starmap":
            for item in self.items:
                yield tuple(item)
        else:
            chunk: list[list[Any]] = []
            for item in self.items:
                chunk.append(list(item))
                if len(chunk) == self.size:
                    yield (chunk,)
                    chunk = []
            if chunk:
                yield (chunk,)

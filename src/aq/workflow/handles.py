"""The handle of a workflow whose outcome is a group: results in order, or as they finish.

A workflow ending in a task gets a plain :class:`~aq.handle.TaskHandle`:
every step reports to the workflow's correlation id, a failing step's error
names the step, and ``cancel()`` stops every step. A workflow ending in a
group (a group, a map, a chain whose last step is a group) gets a
:class:`GroupHandle`: each member reports its own outcome under its index
(``member`` in the reply), which :class:`GroupWaiter` collects, so the handle
can give the list in order, stream results as they come, or return the errors
beside the results as ``asyncio.gather(return_exceptions=True)`` does.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload

from aq.coerce import Converter
from aq.errors import ResultTimeout, TaskFailed
from aq.handle import TaskHandle
from aq.message import Reply, remote_error
from aq.replies import ResultWaiter

if TYPE_CHECKING:
    from aq.broker import Broker

__all__ = ["GroupHandle", "GroupWaiter"]

R = TypeVar("R")

#: The outcome of a group whose members have all reported.
_MEMBERS = object()


class GroupWaiter(ResultWaiter):
    """Collects the outcomes of a group's members by index; see the module docstring.

    Attributes:
        size: how many members the group has, once known.
        members: index -> ("result" or "error", payload).
        arrivals: member indices in the order their outcomes came.
        first_error: the index of the first member that failed, if any.
    """

    __slots__ = ("arrivals", "first_error", "members", "size")

    def __init__(self, size: int | None) -> None:
        super().__init__()
        self.size = size
        self.members: dict[int, tuple[str, Any]] = {}
        self.arrivals: deque[int] = deque()
        self.first_error: int | None = None
        self._complete()

    def feed(self, reply: Reply) -> None:
        index = reply.member
        if index is None:  # about the whole workflow: a step before the group failed
            super().feed(reply)
            return
        if reply.kind in ("result", "error") and index not in self.members:
            self.members[index] = (reply.kind, reply.payload)
            self.arrivals.append(index)
            if reply.kind == "error" and self.first_error is None:
                self.first_error = index
            self._complete()
            self._notify()

    def set_size(self, size: int) -> None:
        """The group turned out to have ``size`` members (a lazily sent map)."""
        self.size = size
        self._complete()
        self._notify()

    def _complete(self) -> None:
        if self.size is not None and len(self.members) >= self.size:
            self._resolve("result", _MEMBERS)


class GroupHandle(TaskHandle[list[R]], Generic[R]):
    """A sent workflow whose outcome is a group: ``await handle.result()`` is the
    list of its members' results, in order; ``handle.stream()`` yields
    ``(index, result)`` pairs as members finish; ``handle.cancel()`` stops
    every member not yet finished."""

    __slots__ = ("_convert_member",)

    _waiter: GroupWaiter

    def __init__(
        self,
        broker: Broker | None,
        root: str,
        name: str,
        waiter: GroupWaiter,
        convert_member: Callable[[int], Converter | None],
    ) -> None:
        super().__init__(broker, root, name, waiter)  # type: ignore[arg-type]  # see cancel
        self._convert_member = convert_member

    async def cancel(self) -> None:
        """Stop every member not yet finished (an empty group has none)."""
        if self._broker is not None:
            await super().cancel()

    @property
    def size(self) -> int | None:
        """How many members the group has (``None`` while a map is still being sent)."""
        return self._waiter.size

    @overload
    async def result(
        self, timeout: float | None = None, *, return_exceptions: Literal[False] = False
    ) -> list[R]: ...
    @overload
    async def result(
        self, timeout: float | None = None, *, return_exceptions: Literal[True]
    ) -> list[R | TaskFailed]: ...
    async def result(
        self, timeout: float | None = None, *, return_exceptions: bool = False
    ) -> list[R] | list[R | TaskFailed]:
        """Wait for every member; their results in the group's order.

        Args:
            timeout: seconds to wait; ``None`` waits as long as it takes.
            return_exceptions: put a failed member's :class:`aq.TaskFailed` in its
                place instead of raising it, as ``asyncio.gather`` does.

        Raises:
            aq.ResultTimeout: the members did not all finish within ``timeout``.
            aq.TaskFailed: a member failed (the first to fail; without
                ``return_exceptions``), or a step before the group did. Its
                ``step`` names the member.
        """
        waiter = self._waiter
        try:
            async with asyncio.timeout(timeout):
                while not waiter.outcome.done():
                    if not return_exceptions and waiter.first_error is not None:
                        break
                    await waiter.wait_changed()
        except TimeoutError:
            raise ResultTimeout(
                f"the group {self.id} did not finish within {timeout} s "
                f"({len(waiter.members)} of {waiter.size or '?'} members did)"
            ) from None
        if not return_exceptions and waiter.first_error is not None:
            raise self._error(waiter.members[waiter.first_error][1])
        status, payload = waiter.outcome.result()
        if status == "error":
            raise self._error(payload)
        if payload is not _MEMBERS:  # an empty group: its outcome came at once
            return payload  # type: ignore[no-any-return]
        return [self._member(index, return_exceptions) for index in range(len(waiter.members))]

    async def stream(self, *, return_exceptions: bool = False) -> AsyncIterator[tuple[int, R]]:
        """Yield ``(index, result)`` for each member as it finishes.

        Raises:
            aq.TaskFailed: a member failed (unless ``return_exceptions``: then its
                error is yielded in place of its result), or a step before the
                group did.
        """
        waiter = self._waiter
        while True:
            while waiter.arrivals:
                index = waiter.arrivals.popleft()
                yield index, self._member(index, return_exceptions)
            if waiter.outcome.done():
                status, payload = waiter.outcome.result()
                if status == "error":
                    raise self._error(payload)
                return
            await waiter.wait_changed()

    def _member(self, index: int, return_exceptions: bool) -> Any:
        status, payload = self._waiter.members[index]
        if status == "error":
            error = self._error(payload)
            if not return_exceptions:
                raise error
            return error
        convert = self._convert_member(index)
        if convert is None or payload is None:
            return payload
        return convert(payload)

    def _error(self, payload: Any) -> TaskFailed:
        return remote_error(self.id, payload)

"""The producer's side of pushed results: one inbox, many waiting handles.

Each :class:`aq.Broker` that sends tasks owns one :class:`ReplyListener`: one
reply address at the broker and one reader task that decodes every reply and
hands it to the :class:`ResultWaiter` registered under its correlation id.
Waiters are held weakly, so a producer that drops a handle without awaiting it
leaves nothing behind: the reply arrives, finds no waiter, and is discarded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from aq import background
from aq.errors import AQError, MessageDecodeError, UntrustedMessage
from aq.message import Reply, decode_reply
from aq.serializer import Serializer
from aq.transport.base import Inbox, Transport

__all__ = ["ReplyListener", "ResultWaiter", "Waiter"]

log = logging.getLogger("aq.replies")

ProgressCallback = Callable[[Any], object]


class Waiter(Protocol):
    """What receives the replies for one correlation id."""

    def feed(self, reply: Reply) -> None: ...


class ResultWaiter:
    """Everything that has arrived for one task: outcome, progress and stream items."""

    __slots__ = (
        "__weakref__",
        "_changed",
        "_early",
        "callbacks",
        "ended",
        "items",
        "next_seq",
        "outcome",
        "progress",
    )

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        #: Resolves to ("result", value) or ("error", error_payload).
        self.outcome: asyncio.Future[tuple[str, Any]] = loop.create_future()
        self.progress: deque[Any] = deque()
        self.items: deque[Any] = deque()
        self.callbacks: list[ProgressCallback] = []
        self.next_seq = 0
        self.ended = False
        self._early: dict[int, Any] = {}
        self._changed: asyncio.Future[None] | None = None

    def feed(self, reply: Reply) -> None:
        kind = reply.kind
        if kind == "progress":
            self.progress.append(reply.payload)
            for callback in self.callbacks:
                try:
                    callback(reply.payload)
                except Exception:
                    log.exception("progress callback failed")
        elif kind == "item":
            self._item(reply.seq, reply.payload)
        elif kind == "end":
            self.ended = True
            for seq in sorted(self._early):  # nothing more will fill a gap now
                self.items.append(self._early.pop(seq))
            self._resolve("result", None)
        elif kind == "result":
            self._resolve("result", reply.payload)
        else:
            self._resolve("error", reply.payload)
        self._notify()

    def _item(self, seq: int, payload: Any) -> None:
        # Items carry a sequence number; a retried stream restarts at 0, and
        # items already seen are skipped so the consumer sees each once, in order.
        if seq < self.next_seq:
            return
        self._early[seq] = payload
        while self.next_seq in self._early:
            self.items.append(self._early.pop(self.next_seq))
            self.next_seq += 1

    def _resolve(self, status: str, payload: Any) -> None:
        if not self.outcome.done():
            self.outcome.set_result((status, payload))

    def _notify(self) -> None:
        changed, self._changed = self._changed, None
        if changed is not None and not changed.done():
            changed.set_result(None)

    async def wait_changed(self) -> None:
        """Wait until the next reply for this task arrives."""
        if self._changed is None:
            self._changed = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._changed)


class ReplyListener:
    """Reads this producer's inbox and resolves waiters by correlation id."""

    def __init__(self, transport: Transport, serializer: Serializer) -> None:
        self._transport = transport
        self._serializer = serializer
        self._waiters: weakref.WeakValueDictionary[str, Waiter] = weakref.WeakValueDictionary()
        self._inbox: Inbox | None = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        if self._inbox is None:
            raise AQError("the reply listener is not started")
        return self._inbox.address

    @property
    def waiting(self) -> int:
        """How many handles are still registered (for tests and metrics)."""
        return len(self._waiters)

    async def start(self) -> None:
        if self._inbox is not None:
            return
        self._inbox = await self._transport.open_inbox()
        inbox = self._inbox
        self._reader = background.start("aq-reply-listener", lambda: self._read(inbox))

    def register(self, correlation_id: str) -> ResultWaiter:
        """The waiter for ``correlation_id``, shared by every handle of a reused task id."""
        waiter = self._waiters.get(correlation_id)
        if not isinstance(waiter, ResultWaiter) or waiter.outcome.done():
            waiter = ResultWaiter()
            self._waiters[correlation_id] = waiter
        return waiter

    def watch(self, correlation_id: str, waiter: Waiter) -> None:
        """Send the replies for ``correlation_id`` to ``waiter`` from now on."""
        self._waiters[correlation_id] = waiter

    async def _read(self, inbox: Inbox) -> None:
        while True:
            self._dispatch(await inbox.get())

    def _dispatch(self, body: bytes) -> None:
        # A separate frame, so no reference to the last waiter outlives the call.
        try:
            reply = decode_reply(body, self._serializer)
        except MessageDecodeError as exc:
            what = "untrusted" if isinstance(exc, UntrustedMessage) else "undecodable"
            log.warning("dropping %s reply: %s", what, exc)
            return
        waiter = self._waiters.get(reply.correlation_id)
        if waiter is not None:
            waiter.feed(reply)

    async def stop(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        inbox, self._inbox = self._inbox, None
        if inbox is not None:
            await inbox.close()

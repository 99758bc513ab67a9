"""Batching a loop turn's replies and acks into as few AMQP frames as it can.

A worker finishing hundreds of tasks in one turn of the event loop would
otherwise publish hundreds of replies, wait for as many publisher confirms,
and send as many ``basic.ack`` frames; RabbitMQ pays for each persistent
message and each ack on its side too. Here:

* :class:`ReplyBatcher` gathers the replies queued for one reply queue into a
  single persistent message. Its body is the replies' bodies one after the
  other, and its header ``x-aq-batch`` is the list of their lengths
  (:func:`split_batch` takes it apart). Each reply queue has at most one batch
  waiting for its publisher confirm: the replies of the turn that finds none in
  flight go at the end of that turn, and those that come while one is in
  flight wait for its confirm and then go together. So an idle worker's lone
  reply goes at once as a plain message, and a busy worker's batches grow with
  its load (hundreds to a message in a drain, against three when every turn
  sent its own). Every caller waits for its batch's confirm, and shares its
  error if there is one.
* :class:`AckWindow` sends a turn's acks of one channel as one ``basic.ack``
  with ``multiple`` set, up to the highest delivery tag below which nothing is
  still being worked on, and acks the rest singly. ``multiple`` covers every
  outstanding tag up to the one it names, so the window keeps each channel's
  tags in delivery order and never lets a multiple ack reach past a delivery
  that is not finished; and its frames (nacks too) leave in the order it
  decided them, since an ack overtaken by a multiple ack names a settled tag,
  which RabbitMQ punishes by closing the channel.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import aiormq.abc
from aiormq.exceptions import ChannelInvalidStateError

from aq.logs import event
from aq.transport.kit import LoopTurn, complete

__all__ = ["BATCH", "AckWindow", "ReplyBatcher", "split_batch"]

log = logging.getLogger("aq.amqp")

#: Header of a message carrying several replies: the lengths of their bodies.
BATCH = "x-aq-batch"

#: A batch message carries at most this many replies, and about this many bytes.
MAX_REPLIES = 500
MAX_BYTES = 1 << 20

# Publishes one message (routing key, body, headers) and waits for its confirm.
Publish = Callable[[str, bytes, "dict[str, Any] | None"], Awaitable[None]]


def split_batch(body: bytes, headers: dict[str, Any] | None) -> list[bytes] | None:
    """The reply bodies one message carries, or ``None`` if its batch header is bad."""
    lengths = (headers or {}).get(BATCH)
    if lengths is None:
        return [body]
    if not isinstance(lengths, list) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in lengths
    ):
        return None
    if sum(lengths) != len(body):
        return None
    bodies, start = [], 0
    for n in lengths:
        bodies.append(body[start : start + n])
        start += n
    return bodies


def _retrieve(future: asyncio.Future[Any]) -> None:
    # A future no caller awaited (fire-and-forget acks) must not log its error.
    if not future.cancelled():
        future.exception()


class ReplyBatcher:
    """See the module docstring."""

    def __init__(self, publish: Publish) -> None:
        self._publish = publish
        self._pending: dict[str, list[tuple[bytes, asyncio.Future[None]]]] = {}
        self._turn = LoopTurn(self._flush)
        # The reply queues with a batch waiting for its confirm, each with its sender.
        self._sending: dict[str, asyncio.Task[None]] = {}

    async def send(self, queue: str, body: bytes) -> None:
        """Queue ``body`` for reply queue ``queue``; return once RabbitMQ has it."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(queue, []).append((body, future))
        if queue not in self._sending:
            self._turn.request()
        await future

    def _flush(self) -> None:
        for queue in [q for q in self._pending if q not in self._sending]:
            self._start(queue)

    def _start(self, queue: str) -> None:
        task = asyncio.create_task(self._send_queue(queue, self._pending.pop(queue)))
        self._sending[queue] = task

    async def _send_queue(
        self, queue: str, parts: list[tuple[bytes, asyncio.Future[None]]]
    ) -> None:
        # One batch in flight per queue: what finishes while it waits for its
        # confirm goes in the next, so batches grow with the load.
        try:
            await asyncio.gather(*(self._send(queue, chunk) for chunk in _chunks(parts)))
        finally:
            del self._sending[queue]
        if queue in self._pending:  # not when cancelled: the next send() starts it
            self._start(queue)

    async def _send(self, queue: str, parts: list[tuple[bytes, asyncio.Future[None]]]) -> None:
        futures = [future for _, future in parts]
        if len(parts) == 1:
            await complete(futures, self._publish(queue, parts[0][0], None))
        else:
            lengths = [len(body) for body, _ in parts]
            body = b"".join(body for body, _ in parts)
            await complete(futures, self._publish(queue, body, {BATCH: lengths}))

    async def close(self) -> None:
        """Send whatever is queued, and wait until every batch has been sent."""
        while self._sending or self._pending:
            self._flush()
            await asyncio.gather(*self._sending.values(), return_exceptions=True)


def _chunks(
    parts: list[tuple[bytes, asyncio.Future[None]]],
) -> list[list[tuple[bytes, asyncio.Future[None]]]]:
    """``parts`` cut into batches of at most MAX_REPLIES replies and about MAX_BYTES."""
    chunks, start = [], 0
    while start < len(parts):
        end, size = start, 0
        while (
            end < len(parts)
            and end - start < MAX_REPLIES
            and (end == start or size + len(parts[end][0]) <= MAX_BYTES)
        ):
            size += len(parts[end][0])
            end += 1
        chunks.append(parts[start:end])
        start = end
    return chunks


class _Channel:
    """One channel's deliveries not yet settled, in delivery-tag order."""

    __slots__ = ("done", "order", "waiter", "wanted")

    def __init__(self) -> None:
        self.order: deque[int] = deque()  # tags in delivery order, some settled already
        self.done: set[int] = set()  # settled otherwise (a single ack or a nack)
        self.wanted: list[int] = []  # acks asked for this turn
        self.waiter: asyncio.Future[None] | None = None


class AckWindow:
    """See the module docstring."""

    def __init__(self) -> None:
        self._channels: dict[aiormq.abc.AbstractChannel, _Channel] = {}
        self._turn = LoopTurn(self._flush)
        # aiormq's frame buffer is bounded, so two senders' frames can overtake
        # each other there: every frame of the window goes out under this
        # (first come, first served) lock, in the order the window decided them.
        self._lock = asyncio.Lock()

    def track(self, channel: aiormq.abc.AbstractChannel, tag: int) -> None:
        """A delivery arrived: it is outstanding until acked or :meth:`forget`-ten."""
        state = self._channels.get(channel)
        if state is None:
            state = self._channels[channel] = _Channel()
            self._prune()
        state.order.append(tag)

    def forget(self, channel: aiormq.abc.AbstractChannel, tag: int) -> bool:
        """Take the delivery out of the window, to settle it another way (``basic.nack``).

        False if its ack has been asked for already: then it is not the caller's to settle.
        """
        state = self._channels.get(channel)
        if state is None:
            return True
        if tag in state.done or tag in state.wanted or tag not in state.order:
            return False
        state.done.add(tag)
        return True

    async def nack(self, channel: aiormq.abc.AbstractChannel, tag: int) -> None:
        """``basic.nack`` with requeue, in order with the window's acks; nothing if
        its ack has been asked for already."""
        if self.forget(channel, tag):
            async with self._lock:
                await channel.basic_nack(tag, requeue=True)

    def ack(self, channel: aiormq.abc.AbstractChannel, tag: int) -> asyncio.Future[None]:
        """Ack the delivery in this turn's frames; the future is done once they are sent."""
        state = self._channels.get(channel)
        if state is None:  # not tracked (it should be): ack it on its own
            state = self._channels[channel] = _Channel()
            state.order.append(tag)
        state.wanted.append(tag)
        if state.waiter is None:
            state.waiter = asyncio.get_running_loop().create_future()
            state.waiter.add_done_callback(_retrieve)
        self._turn.request()
        return state.waiter

    def _prune(self) -> None:
        for channel in [c for c in self._channels if c.is_closed]:
            state = self._channels.pop(channel)
            if state.waiter is not None and not state.waiter.done():
                state.waiter.set_exception(ChannelInvalidStateError(f"{channel!r} closed"))

    def _flush(self) -> None:
        for channel, state in self._channels.items():
            if state.waiter is None:
                continue
            frames = self._frames(state)
            waiter, state.waiter = state.waiter, None
            self._turn.start(self._send(channel, frames, waiter))

    @staticmethod
    def _frames(state: _Channel) -> list[tuple[int, bool]]:
        """(tag, multiple) for the acks asked for: one multiple ack for the finished
        run at the front of the window, a single ack for each of the others."""
        wanted = set(state.wanted)
        state.wanted.clear()
        order, done = state.order, state.done
        front, count = 0, 0
        while order and (order[0] in wanted or order[0] in done):
            tag = order.popleft()
            if tag in wanted:
                wanted.discard(tag)
                front, count = tag, count + 1
            else:
                done.discard(tag)
        frames = [(front, count > 1)] if count else []
        for tag in sorted(wanted):
            done.add(tag)
            frames.append((tag, False))
        return frames

    async def _send(
        self,
        channel: aiormq.abc.AbstractChannel,
        frames: list[tuple[int, bool]],
        waiter: asyncio.Future[None],
    ) -> None:
        error = await complete([waiter], self._send_frames(channel, frames))
        if error is not None:
            event(log, logging.DEBUG, "amqp.ack_failed", error=error)

    async def _send_frames(
        self, channel: aiormq.abc.AbstractChannel, frames: list[tuple[int, bool]]
    ) -> None:
        async with self._lock:
            for i, (tag, multiple) in enumerate(frames):
                await channel.basic_ack(tag, multiple=multiple, wait=i == len(frames) - 1)

    async def close(self) -> None:
        """Send the acks asked for, and wait for those being sent."""
        await self._turn.drain()

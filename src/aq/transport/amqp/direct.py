"""Consuming queues straight through aiormq, kept consuming whatever happens.

aio-pika's own consumers wrap every delivery in an ``IncomingMessage`` and run
the callback in one more task; aq needs neither, and on a worker draining
thousands of messages a second they cost a tenth of its time. aio-pika still
restores the channel after a reconnect (its prefetch, and the queues declared
on it); :class:`DirectConsumers` then starts its consumers again on the new
channel.

RabbitMQ may also cancel a consumer on a channel that stays open: the queue
was deleted, or a quorum queue's leader moved to another node. aiormq only
logs that; here it starts a resumption that declares the queue again (through
the ``restore`` function the owner gives) and consumes it again, retrying with
backoff until it succeeds or the consumers are cancelled, so a worker never
sits idle on a live connection while its queue fills.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import aiormq.abc
from aio_pika.abc import AbstractRobustChannel
from aiormq import spec

from aq.logs import event
from aq.transport.amqp.errors import translated
from aq.transport.kit import ReconnectDelay

__all__ = ["DirectConsumers", "OnMessage", "Restore"]

log = logging.getLogger("aq.amqp")

OnMessage = Callable[[aiormq.abc.DeliveredMessage], Coroutine[Any, Any, Any]]
#: Declares a queue (by name) again before consuming it again after a cancel.
Restore = Callable[[str], Awaitable[object]]

_RESUME_FIRST_DELAY = 0.1
_RESUME_MAX_DELAY = 5.0


class DirectConsumers:
    """Consumers of ``queues`` (name, callback) on ``channel``, kept across reconnects
    and across cancellations by the broker; see the module docstring."""

    def __init__(
        self,
        channel: AbstractRobustChannel,
        queues: list[tuple[str, OnMessage]],
        restore: Restore | None = None,
    ) -> None:
        self._channel = channel
        self._callbacks = dict(queues)
        self._restore = restore
        #: queue -> (the channel it is consumed on, the consumer tag)
        self._tags: dict[str, tuple[aiormq.abc.AbstractChannel, str]] = {}
        self._resuming: dict[str, asyncio.Task[None]] = {}
        self._chores: set[asyncio.Task[None]] = set()
        self._paused: set[str] = set()
        self._stopped = False

    async def start(self) -> None:
        await self._consume_all()
        self._channel.reopen_callbacks.add(self._reopened)

    async def _consume_all(self) -> None:
        underlay = await self._channel.get_underlay_channel()
        underlay.on_consumer_cancel_callbacks.add(self._on_cancel)
        for queue in self._callbacks:
            if queue not in self._paused:
                await self._consume(underlay, queue)

    async def _consume(self, underlay: aiormq.abc.AbstractChannel, queue: str) -> None:
        ok = await underlay.basic_consume(queue, self._callbacks[queue])
        self._tags[queue] = (underlay, ok.consumer_tag or "")

    async def _reopened(self, *_: object) -> None:
        if not self._stopped:
            with translated("consume again after a reconnect"):
                await self._consume_all()

    def _on_cancel(self, frame: spec.Basic.Cancel) -> None:
        for queue, (_, tag) in list(self._tags.items()):
            if tag == frame.consumer_tag and not self._stopped:
                del self._tags[queue]
                event(
                    log,
                    logging.WARNING,
                    "amqp.consumer_cancelled",
                    queue=queue,
                    note="RabbitMQ cancelled the consumer (queue deleted, or its leader "
                    "moved); declaring it again and consuming again",
                )
                self._start_resuming(queue)

    def restart(self, queue: str) -> None:
        """Consume ``queue`` afresh: cancel the consumer this side believes in (RabbitMQ
        may have dropped it without a word) and declare and consume the queue again."""
        if self._stopped or queue in self._resuming:
            return
        found = self._tags.pop(queue, None)
        if found is not None and not found[0].is_closed:
            chore = asyncio.get_running_loop().create_task(self._forget(*found))
            self._chores.add(chore)
            chore.add_done_callback(self._chores.discard)
        self._start_resuming(queue)

    async def _forget(self, underlay: aiormq.abc.AbstractChannel, tag: str) -> None:
        with contextlib.suppress(Exception):
            await underlay.basic_cancel(tag)

    def _start_resuming(self, queue: str) -> None:
        task = asyncio.get_running_loop().create_task(self._resume(queue))
        self._resuming[queue] = task
        task.add_done_callback(functools.partial(self._resumed, queue))

    def _resumed(self, queue: str, _: object) -> None:
        self._resuming.pop(queue, None)

    async def _resume(self, queue: str) -> None:
        """Declare ``queue`` again and consume it again, retrying until it works."""
        delays = ReconnectDelay(_RESUME_FIRST_DELAY, _RESUME_MAX_DELAY)
        attempts = 0
        while not self._stopped:
            attempts += 1
            try:
                underlay = await self._channel.get_underlay_channel()
                if queue in self._tags:
                    return  # a reconnect has consumed it again meanwhile
                if self._restore is not None:
                    await self._restore(queue)
                with translated(f"consume {queue} again"):
                    await self._consume(underlay, queue)
            except Exception as exc:  # anything: this retries until it works or is cancelled
                if attempts == 1:
                    event(log, logging.WARNING, "amqp.resume_retrying", queue=queue, error=exc)
                await delays.wait()
                continue
            event(log, logging.INFO, "amqp.consumer_resumed", queue=queue, attempts=attempts)
            return

    async def pause(self, keep: str) -> None:
        """Stop consuming every queue but ``keep`` until :meth:`resume`; once this
        returns, those queues deliver nothing more."""
        for queue in [q for q in self._tags if q != keep]:
            underlay, tag = self._tags.pop(queue)
            self._paused.add(queue)
            if not underlay.is_closed:
                await underlay.basic_cancel(tag)

    async def resume(self) -> None:
        """Consume the queues :meth:`pause` stopped again."""
        paused, self._paused = self._paused, set()
        if self._stopped or not paused:
            return
        underlay = await self._channel.get_underlay_channel()
        for queue in paused:
            if queue not in self._tags and queue not in self._resuming:
                with translated(f"consume {queue} again"):
                    await self._consume(underlay, queue)

    async def cancel(self) -> None:
        """Stop consuming (deliveries already sent stay unacked until settled)."""
        self._stopped = True
        resuming = [*self._resuming.values(), *self._chores]
        for task in resuming:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*resuming, return_exceptions=True)
        for underlay, tag in self._tags.values():
            if not underlay.is_closed:
                await underlay.basic_cancel(tag)

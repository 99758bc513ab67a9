"""Leader election by RabbitMQ itself: a single-active-consumer queue and a token.

Every campaigner consumes the durable queue ``P.election.<name>``, declared
with ``x-single-active-consumer``, with a prefetch of one and manual acks.
RabbitMQ delivers to one consumer of such a queue at a time; the queue holds a
*token* message, and whoever holds it unacked leads. It never acks it: when the
leader's channel or connection closes (its process died, its network was cut,
its heartbeats stopped), RabbitMQ returns the token to the queue and activates
the next consumer, which receives it and leads. So no extra server is needed.

A campaigner that is not leading puts a token in the queue whenever it finds
none ready, every few seconds, so a lost or purged token is replaced; the
leader holding one token and one spare waiting does no harm, since only the
active consumer is ever given them. Every minute the leader swaps its token for
a fresh one (publishes one, then acks the old), so RabbitMQ's
``consumer_timeout`` never closes its channel for holding a delivery too long.
A leader learns it lost its place when its channel closes or RabbitMQ cancels
its consumer (the queue was deleted); it then stops leading at once and
campaigns again on a fresh channel once the connection is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aiormq.abc

from aq import background
from aq.logs import event
from aq.transport.amqp.context import AmqpContext
from aq.transport.amqp.errors import translated
from aq.transport.election import Election
from aq.transport.kit import ReconnectDelay

__all__ = ["QueueElection"]

log = logging.getLogger("aq.amqp")

#: Seconds between a campaigner's looks at the queue (is there a token? is it there?).
_LOOK_INTERVAL = 2.0
#: Seconds a leader holds one token before it swaps it for a fresh one.
_ROTATE_EVERY = 60.0


class QueueElection(Election):
    """See the module docstring."""

    def __init__(self, context: AmqpContext, name: str) -> None:
        self._context = context
        self.queue = context.names.election_queue(name)
        self._leading = asyncio.Event()
        self._lost = asyncio.Event()
        self._lost.set()
        self._task: asyncio.Task[None] | None = None
        self._resigning = False
        #: The delivery tag of the token this process holds while it leads.
        self._held: int | None = None

    @property
    def leading(self) -> bool:
        return self._leading.is_set()

    async def campaign(self) -> None:
        if self._task is None:
            self._task = background.start(f"aq-election-{self.queue}", self._stand_again)
        await self._leading.wait()

    async def wait_lost(self) -> None:
        await self._lost.wait()

    async def resign(self) -> None:
        task, self._task = self._task, None
        self._resigning = True
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._step_down(quietly=True)

    def _lead(self) -> None:
        if not self._leading.is_set():
            self._lost.clear()
            self._leading.set()

    def _step_down(self, *, quietly: bool = False) -> None:
        if self._leading.is_set() and not quietly:
            event(log, logging.WARNING, "election.lost", queue=self.queue)
        self._leading.clear()
        self._lost.set()

    async def _stand_again(self) -> None:
        delay = ReconnectDelay(0.1, 5.0)
        reported = ""
        while True:
            try:
                await self._stand()
            except Exception as exc:  # a closed channel or connection, in whatever form
                self._step_down()
                # Said once per distinct problem: a queue declared with other
                # arguments, say, would otherwise keep every scheduler from leading
                # without a word.
                text = f"{type(exc).__name__}: {exc}"
                level = logging.DEBUG if text == reported else logging.WARNING
                event(log, level, "election.retry", queue=self.queue, error=text)
                reported = text
                await delay.wait()
            else:
                delay.reset()
                reported = ""

    async def _stand(self) -> None:
        """Campaign on one channel until it closes or RabbitMQ cancels the consumer."""
        channel = await self._context.open_channel()
        cancelled = asyncio.get_running_loop().create_future()

        def on_cancel(frame: aiormq.spec.Basic.Cancel) -> None:
            if not cancelled.done():
                self._step_down()  # at once: another consumer may be given the token now
                cancelled.set_result(None)

        channel.on_consumer_cancel_callbacks.add(on_cancel)
        closed = asyncio.ensure_future(_closing(channel))
        rotated = asyncio.get_running_loop().time()
        try:
            await self._consume(channel)
            while not channel.is_closed and not cancelled.done():
                if not self.leading:
                    await self._top_up(channel)
                elif asyncio.get_running_loop().time() - rotated > _ROTATE_EVERY:
                    await self._rotate(channel)
                    rotated = asyncio.get_running_loop().time()
                await asyncio.wait(
                    [closed, cancelled], timeout=_LOOK_INTERVAL, return_when=asyncio.FIRST_COMPLETED
                )
            if cancelled.done():
                event(log, logging.WARNING, "election.cancelled", queue=self.queue)
        finally:
            closed.cancel()
            self._step_down(quietly=self._resigning)
            if not channel.is_closed:
                with contextlib.suppress(Exception):
                    await channel.close()

    async def _consume(self, channel: aiormq.abc.AbstractChannel) -> None:
        arguments: dict[str, Any] = {"x-single-active-consumer": True}
        if self._context.settings.queue_type == "quorum":
            arguments["x-queue-type"] = "quorum"
        with translated("declare the election queue"):
            await channel.basic_qos(prefetch_count=1)
            await channel.queue_declare(self.queue, durable=True, arguments=arguments)

            async def on_token(message: aiormq.abc.DeliveredMessage) -> None:
                self._held = message.delivery_tag
                if not self.leading:
                    self._lead()
                    event(log, logging.INFO, "election.won", queue=self.queue)

            await channel.basic_consume(self.queue, on_token, no_ack=False)

    async def _rotate(self, channel: aiormq.abc.AbstractChannel) -> None:
        """Swap the held token for a fresh one, so RabbitMQ's ``consumer_timeout``
        (30 minutes by default) never sees a delivery held that long. The fresh
        token is published first and the old one acked after: this consumer stays
        the active one, so the fresh token comes back to it."""
        held = self._held
        if held is None:
            return
        with translated("renew the election token"):
            await self._publish_token(channel)
            await channel.basic_ack(held)

    async def _top_up(self, channel: aiormq.abc.AbstractChannel) -> None:
        """Put a token in the queue if none is ready (the leader holds one unacked)."""
        with translated("look at the election queue"):
            declared = await channel.queue_declare(self.queue, passive=True)
            if declared.message_count == 0:
                await self._publish_token(channel)

    async def _publish_token(self, channel: aiormq.abc.AbstractChannel) -> None:
        await channel.basic_publish(
            b"token",
            routing_key=self.queue,
            properties=aiormq.spec.Basic.Properties(delivery_mode=2),
        )


async def _closing(channel: aiormq.abc.AbstractChannel) -> None:
    """Return once ``channel`` has closed, however it closed."""
    with contextlib.suppress(Exception):
        await channel.closing

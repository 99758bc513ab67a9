"""The transport contract: what every :class:`~aq.transport.Transport` must do with bytes.

:class:`TransportContract` is a base class of pytest tests. Each test publishes,
consumes and settles plain byte strings on one transport and checks what its
:class:`~aq.transport.Admin` then reports: no task, worker or codec is involved,
so a failure points at the transport itself. Every await is bounded by
:attr:`TransportContract.timeout`, so a transport that loses a message fails the
test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import ClassVar, TypeVar

import pytest

from aq.errors import BrokerError, ConfigurationError
from aq.transport import Consumer, Delivery, Transport

__all__ = ["TransportContract", "wait_within"]

T = TypeVar("T")


async def wait_within(seconds: float, awaitable: Awaitable[T]) -> T:
    """Await ``awaitable``, failing the test if it takes longer than ``seconds``
    (a transport that lost a message makes a test fail, not hang)."""
    deadline = asyncio.timeout(seconds)
    try:
        async with deadline:
            return await awaitable
    except TimeoutError:
        if not deadline.expired():
            raise  # raised by the awaitable itself
        what = getattr(awaitable, "__qualname__", repr(awaitable))
        pytest.fail(f"{what}() did not finish within {seconds:g} s")


class TransportContract:
    """Tests every transport must pass; subclass it as ``TestMyTransport``.

    The subclass provides a fixture ``transport``: an async fixture yielding a
    connected :class:`~aq.transport.Transport` on a fresh namespace (no messages,
    dead letters or subscribers left from another test).
    """

    pytestmark = pytest.mark.asyncio

    #: The queue the tests use; override it if your broker restricts names.
    queue: ClassVar[str] = "contract"
    #: A second queue, for consumers of several queues.
    other_queue: ClassVar[str] = "contract-other"
    #: Seconds any one operation may take before the test fails.
    timeout: ClassVar[float] = 5.0
    #: Seconds ahead the message of the due-time test is due.
    eta_delay: ClassVar[float] = 0.3

    # -- helpers ---------------------------------------------------------------------

    async def _within(self, awaitable: Awaitable[T]) -> T:
        return await wait_within(self.timeout, awaitable)

    @contextlib.asynccontextmanager
    async def _consuming(
        self,
        transport: Transport,
        queues: Sequence[str] | None = None,
        *,
        prefetch: int = 1,
        isolated: bool = False,
    ) -> AsyncIterator[Consumer]:
        names = [self.queue] if queues is None else queues
        consumer = await self._within(transport.consume(names, prefetch, isolated=isolated))
        try:
            yield consumer
        finally:
            await self._within(consumer.close())

    async def _get(self, consumer: Consumer) -> Delivery:
        return await self._within(consumer.get())

    async def _dead_letter(self, transport: Transport, *bodies: bytes, reason: str) -> None:
        """Publish ``bodies`` and dead-letter each with ``reason``."""
        for body in bodies:
            await self._within(transport.publish(self.queue, body))
        async with self._consuming(transport, prefetch=len(bodies)) as consumer:
            for _ in bodies:
                await (await self._get(consumer)).dead_letter(reason)

    # -- delivery --------------------------------------------------------------------

    async def test_a_published_body_is_delivered_with_a_count_of_one(
        self, transport: Transport
    ) -> None:
        await self._within(transport.publish(self.queue, b"hello"))
        async with self._consuming(transport) as consumer:
            delivery = await self._get(consumer)
            await delivery.ack()
        assert (delivery.body, delivery.queue, delivery.delivery_count) == (b"hello", self.queue, 1)

    async def test_a_delivered_message_counts_as_unacked_until_acked(
        self, transport: Transport
    ) -> None:
        await self._within(transport.publish(self.queue, b"job"))
        async with self._consuming(transport) as consumer:
            delivery = await self._get(consumer)
            held = await transport.admin.stats(self.queue)
            await delivery.ack()
            done = await transport.admin.stats(self.queue)
        assert (held.ready, held.unacked) == (0, 1)
        assert (done.ready, done.unacked, done.dead) == (0, 0, 0)

    async def test_a_requeued_message_is_delivered_again_and_counted(
        self, transport: Transport
    ) -> None:
        await self._within(transport.publish(self.queue, b"again"))
        async with self._consuming(transport) as consumer:
            await (await self._get(consumer)).requeue()
            delivery = await self._get(consumer)
            await delivery.ack()
        assert (delivery.body, delivery.delivery_count) == (b"again", 2)

    async def test_messages_of_one_priority_arrive_in_publish_order(
        self, transport: Transport
    ) -> None:
        bodies = [b"1", b"2", b"3", b"4"]
        for body in bodies:
            await self._within(transport.publish(self.queue, body))
        received = []
        async with self._consuming(transport) as consumer:
            for _ in bodies:
                delivery = await self._get(consumer)
                received.append(delivery.body)
                await delivery.ack()
        assert received == bodies

    async def test_a_higher_priority_is_delivered_first(self, transport: Transport) -> None:
        try:
            for body, priority in [(b"low", 0), (b"high", 9), (b"mid", 5), (b"low2", 0)]:
                await self._within(transport.publish(self.queue, body, priority=priority))
        except ConfigurationError as exc:
            pytest.skip(f"this transport refuses priorities: {exc}")
        received = []
        async with self._consuming(transport) as consumer:
            for _ in range(4):
                delivery = await self._get(consumer)
                received.append(delivery.body)
                await delivery.ack()
        assert received == [b"high", b"mid", b"low", b"low2"]

    async def test_a_consumer_of_several_queues_receives_from_each(
        self, transport: Transport
    ) -> None:
        await self._within(transport.publish(self.queue, b"one"))
        await self._within(transport.publish(self.other_queue, b"other"))
        received = set()
        async with self._consuming(transport, [self.queue, self.other_queue]) as consumer:
            for _ in range(2):
                delivery = await self._get(consumer)
                received.add((delivery.queue, delivery.body))
                await delivery.ack()
        assert received == {(self.queue, b"one"), (self.other_queue, b"other")}

    async def test_consuming_no_queue_raises_broker_error(self, transport: Transport) -> None:
        with pytest.raises(BrokerError):
            await self._within(transport.consume([], 1))

    # -- due times -------------------------------------------------------------------

    async def test_a_message_with_a_future_eta_counts_as_delayed(
        self, transport: Transport
    ) -> None:
        await self._within(transport.publish(self.queue, b"later", eta=time.time() + 60))
        stats = await transport.admin.stats(self.queue)
        assert (stats.ready, stats.delayed) == (0, 1)

    async def test_a_message_with_an_eta_is_delivered_once_due_and_not_before(
        self, transport: Transport
    ) -> None:
        eta = time.time() + self.eta_delay
        await self._within(transport.publish(self.queue, b"later", eta=eta))
        async with self._consuming(transport) as consumer:
            delivery = await self._get(consumer)
            arrived = time.time()
            await delivery.ack()
        assert delivery.body == b"later"
        assert arrived >= eta

    async def test_a_message_with_a_past_eta_is_delivered_at_once(
        self, transport: Transport
    ) -> None:
        await self._within(transport.publish(self.queue, b"overdue", eta=time.time() - 60))
        async with self._consuming(transport) as consumer:
            delivery = await self._get(consumer)
            await delivery.ack()
        assert delivery.body == b"overdue"

    # -- holding ---------------------------------------------------------------------

    async def test_prefetch_bounds_the_unsettled_deliveries(self, transport: Transport) -> None:
        for body in (b"1", b"2", b"3"):
            await self._within(transport.publish(self.queue, body))
        async with self._consuming(transport, prefetch=2) as consumer:
            first = await self._get(consumer)
            second = await self._get(consumer)
            full = await transport.admin.stats(self.queue)
            await first.ack()
            third = await self._get(consumer)  # room for one more
            await second.ack()
            await third.ack()
        assert (full.ready, full.unacked) == (1, 2)
        assert sorted(d.body for d in (first, second, third)) == [b"1", b"2", b"3"]

    async def test_closing_a_consumer_returns_its_unsettled_deliveries_uncounted(
        self, transport: Transport
    ) -> None:
        for body in (b"a", b"b"):
            await self._within(transport.publish(self.queue, body))
        async with self._consuming(transport, prefetch=2) as consumer:
            await self._get(consumer)  # the other one may be buffered, unseen
        returned = await transport.admin.stats(self.queue)
        async with self._consuming(transport, prefetch=2) as consumer:
            again = [await self._get(consumer) for _ in range(2)]
            for delivery in again:
                await delivery.ack()
        assert (returned.ready, returned.unacked) == (2, 0)
        assert sorted((d.body, d.delivery_count) for d in again) == [(b"a", 1), (b"b", 1)]

    async def test_a_second_settlement_does_nothing(self, transport: Transport) -> None:
        await self._within(transport.publish(self.queue, b"once"))
        async with self._consuming(transport) as consumer:
            delivery = await self._get(consumer)
            await delivery.dead_letter("first")
            await delivery.ack()
            await delivery.requeue()
            await delivery.dead_letter("second")
            await delivery.isolate()
        stats = await transport.admin.stats(self.queue)
        letters = await transport.admin.dead_letters(self.queue)
        assert [letter.reason for letter in letters] == ["first"]
        assert (stats.ready, stats.unacked, stats.isolated, stats.dead) == (0, 0, 0, 1)

    # -- dead letters ----------------------------------------------------------------

    async def test_a_dead_lettered_message_is_kept_with_its_reason(
        self, transport: Transport
    ) -> None:
        before = time.time()
        await self._dead_letter(transport, b"poison", reason="bad input")
        stats = await transport.admin.stats(self.queue)
        [letter] = await transport.admin.dead_letters(self.queue)
        assert (letter.queue, letter.body, letter.reason) == (self.queue, b"poison", "bad input")
        assert before - 1 <= letter.dead_at <= time.time() + 1
        assert (stats.ready, stats.unacked, stats.dead) == (0, 0, 1)

    async def test_requeue_dead_puts_dead_letters_back_in_the_queue(
        self, transport: Transport
    ) -> None:
        await self._dead_letter(transport, b"retry me", reason="bad input")
        assert await transport.admin.requeue_dead(self.queue) == 1
        assert await transport.admin.dead_letters(self.queue) == []
        async with self._consuming(transport) as consumer:
            delivery = await self._get(consumer)
            await delivery.ack()
        assert (delivery.body, delivery.delivery_count) == (b"retry me", 1)

    async def test_requeue_dead_with_ids_puts_back_only_those(self, transport: Transport) -> None:
        await self._dead_letter(transport, b"a", b"b", reason="bad input")
        letters = await transport.admin.dead_letters(self.queue)
        chosen = [letter.id for letter in letters if letter.body == b"a"]
        assert await transport.admin.requeue_dead(self.queue, ids=chosen) == 1
        left = await transport.admin.dead_letters(self.queue)
        async with self._consuming(transport) as consumer:
            delivery = await self._get(consumer)
            await delivery.ack()
        assert [letter.body for letter in left] == [b"b"]
        assert delivery.body == b"a"

    async def test_purge_dead_deletes_every_dead_letter(self, transport: Transport) -> None:
        await self._dead_letter(transport, b"a", b"b", reason="bad input")
        assert await transport.admin.purge_dead(self.queue) == 2
        assert await transport.admin.dead_letters(self.queue) == []
        assert (await transport.admin.stats(self.queue)).dead == 0

    # -- isolation -------------------------------------------------------------------

    async def test_an_isolated_message_moves_to_the_isolation_queue_counted_afresh(
        self, transport: Transport
    ) -> None:
        await self._within(transport.publish(self.queue, b"suspect"))
        async with self._consuming(transport) as consumer:
            await (await self._get(consumer)).requeue()
            await (await self._get(consumer)).isolate()  # its second delivery
        moved = await transport.admin.stats(self.queue)
        async with self._consuming(transport, isolated=True) as isolation:
            delivery = await self._get(isolation)
            await delivery.ack()
        after = await transport.admin.stats(self.queue)
        assert (moved.ready, moved.unacked, moved.isolated) == (0, 0, 1)
        assert (delivery.body, delivery.delivery_count) == (b"suspect", 1)
        assert (after.ready, after.isolated, after.dead) == (0, 0, 0)

    async def test_an_isolated_delivery_dead_letters_into_the_queue_it_came_from(
        self, transport: Transport
    ) -> None:
        await self._within(transport.publish(self.queue, b"suspect"))
        async with self._consuming(transport) as consumer:
            await (await self._get(consumer)).isolate()
        async with self._consuming(transport, isolated=True) as isolation:
            await (await self._get(isolation)).dead_letter("crashed")
        [letter] = await transport.admin.dead_letters(self.queue)
        stats = await transport.admin.stats(self.queue)
        assert (letter.body, letter.reason) == (b"suspect", "crashed")
        assert (stats.isolated, stats.dead) == (0, 1)

    # -- purging ---------------------------------------------------------------------

    async def test_purge_deletes_ready_and_delayed_messages(self, transport: Transport) -> None:
        await self._within(transport.publish(self.queue, b"now"))
        await self._within(transport.publish(self.queue, b"now too"))
        await self._within(transport.publish(self.queue, b"later", eta=time.time() + 60))
        assert await transport.admin.purge(self.queue) == 3
        stats = await transport.admin.stats(self.queue)
        assert (stats.ready, stats.delayed) == (0, 0)

    async def test_purge_keeps_dead_letters(self, transport: Transport) -> None:
        await self._dead_letter(transport, b"poison", reason="bad input")
        await transport.admin.purge(self.queue)
        assert [d.body for d in await transport.admin.dead_letters(self.queue)] == [b"poison"]

    # -- replies and control ---------------------------------------------------------

    async def test_replies_reach_the_inbox_in_order(self, transport: Transport) -> None:
        inbox = await self._within(transport.open_inbox())
        try:
            for body in (b"1", b"2", b"3"):
                await self._within(transport.send_reply(inbox.address, body))
            received = [await self._within(inbox.get()) for _ in range(3)]
        finally:
            await self._within(inbox.close())
        assert received == [b"1", b"2", b"3"]

    async def test_a_reply_to_a_closed_inbox_is_dropped_without_error(
        self, transport: Transport
    ) -> None:
        inbox = await self._within(transport.open_inbox())
        await self._within(inbox.close())
        await self._within(transport.send_reply(inbox.address, b"too late"))

    async def test_reply_and_ack_sends_the_reply_and_settles_the_delivery(
        self, transport: Transport
    ) -> None:
        await self._within(transport.publish(self.queue, b"job"))
        inbox = await self._within(transport.open_inbox())
        try:
            async with self._consuming(transport) as consumer:
                delivery = await self._get(consumer)
                await self._within(transport.reply_and_ack(delivery, inbox.address, b"done"))
                reply = await self._within(inbox.get())
                stats = await transport.admin.stats(self.queue)
        finally:
            await self._within(inbox.close())
        assert reply == b"done"
        assert (stats.ready, stats.unacked) == (0, 0)

    async def test_a_broadcast_reaches_every_control_subscriber(self, transport: Transport) -> None:
        inboxes = [await self._within(transport.subscribe_control()) for _ in range(2)]
        try:
            await self._within(transport.broadcast(b"cancel"))
            received = [await self._within(inbox.get()) for inbox in inboxes]
        finally:
            for inbox in inboxes:
                await self._within(inbox.close())
        assert received == [b"cancel", b"cancel"]

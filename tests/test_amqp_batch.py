"""Batched replies and acks on RabbitMQ: a multiple ack never reaches a delivery
still being worked on, batch messages split back into their replies, and a
worker finishing many tasks at once sends fewer reply messages than replies."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator

import aio_pika
import aiormq.abc
import pytest

import aq
from aq.testing import running_worker
from aq.transport.amqp.batch import BATCH, AckWindow, ReplyBatcher, split_batch
from tests.conftest import AMQP_URL


@pytest.fixture
async def channel() -> AsyncIterator[tuple[aiormq.abc.AbstractChannel, str]]:
    """A plain channel and a fresh queue holding ten messages, bodies b"1".."10"."""
    connection = await aio_pika.connect(AMQP_URL)
    queue = f"aqt-batch-{uuid.uuid4().hex[:12]}"
    async with connection:
        setup = await connection.channel()
        await setup.declare_queue(queue, auto_delete=False)
        for i in range(1, 11):
            await setup.default_exchange.publish(aio_pika.Message(str(i).encode()), queue)
        raw = await connection.channel()
        try:
            yield await raw.get_underlay_channel(), queue
        finally:
            await setup.queue_delete(queue)


async def _deliveries(channel: aiormq.abc.AbstractChannel, queue: str, n: int) -> list[int]:
    """Consume ``n`` messages without acking them, then stop consuming (so that a
    requeued message stays in the queue); their delivery tags."""
    tags: list[int] = []
    got = asyncio.Event()

    async def on_message(message: aiormq.abc.DeliveredMessage) -> None:
        tags.append(message.delivery_tag or 0)
        if len(tags) == n:
            got.set()

    await channel.basic_qos(prefetch_count=n)
    ok = await channel.basic_consume(queue, on_message, no_ack=False)
    await got.wait()
    await channel.basic_cancel(ok.consumer_tag or "")
    return tags


async def _settles_at(channel: aiormq.abc.AbstractChannel, queue: str, expected: int) -> None:
    """Close the channel (RabbitMQ requeues what it did not ack) and wait until the
    queue holds ``expected`` messages: requeueing after a close is asynchronous, and
    an ack too many would leave it short for ever (the test's timeout fails it)."""
    if not channel.is_closed:
        await channel.close()
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        check = await connection.channel()
        # RabbitMQ offers no event for "requeued": the count is all there is.
        while await _ready(check, queue) != expected:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def _tracked(
    channel: aiormq.abc.AbstractChannel, queue: str, n: int
) -> tuple[AckWindow, list[int]]:
    """``n`` deliveries of ``queue`` (see :func:`_deliveries`), tracked by a new window."""
    tags = await _deliveries(channel, queue, n)
    window = AckWindow()
    for tag in tags:
        window.track(channel, tag)
    return window, tags


async def _ready(channel: aio_pika.abc.AbstractChannel, queue: str) -> int:
    declared = await channel.declare_queue(queue, passive=True)
    return declared.declaration_result.message_count or 0


def test_split_batch_takes_a_batch_apart_and_refuses_a_bad_header() -> None:
    assert split_batch(b"abc", None) == [b"abc"]
    assert split_batch(b"abcdef", {BATCH: [1, 0, 2, 3]}) == [b"a", b"", b"bc", b"def"]
    assert split_batch(b"abcdef", {BATCH: [1, 2]}) is None  # lengths do not add up
    assert split_batch(b"ab", {BATCH: [1, -1, 2]}) is None
    assert split_batch(b"ab", {BATCH: "2"}) is None
    assert split_batch(b"ab", {BATCH: [True, 1]}) is None


async def test_a_turn_of_acks_covers_only_finished_deliveries(
    channel: tuple[aiormq.abc.AbstractChannel, str],
) -> None:
    ch, queue = channel
    window, tags = await _tracked(ch, queue, 10)
    # 1-3 finished, 4 still running, 5 and 7 finished, 6 nacked elsewhere (here:
    # taken out), 8-10 running: one multiple ack must not reach 4 or 6.
    assert window.forget(ch, tags[5])
    acked = [window.ack(ch, tags[i]) for i in (0, 1, 2, 4, 6)]
    await asyncio.gather(*acked)
    assert not window.forget(ch, tags[0])  # acked already: not the caller's to settle
    # A second turn: 4 finishes, so the front advances over 4..5 and stops at 6.
    await window.ack(ch, tags[3])
    await window.close()
    # Left unacked: 6 (taken out, never nacked here) and 8, 9, 10.
    await _settles_at(ch, queue, 4)


async def test_acks_of_a_closed_channel_fail_and_leave_the_messages_queued(
    channel: tuple[aiormq.abc.AbstractChannel, str],
) -> None:
    ch, queue = channel
    window, tags = await _tracked(ch, queue, 10)
    await ch.close()
    with pytest.raises(aiormq.exceptions.ChannelInvalidStateError):
        await window.ack(ch, tags[0])
    await _settles_at(ch, queue, 10)


async def test_a_burst_of_results_arrives_whole_in_fewer_reply_messages() -> None:
    broker = aq.Broker(f"{AMQP_URL}?prefix=aqt-{uuid.uuid4().hex[:12]}")
    published: list[int] = []

    @broker.task
    async def double(x: int) -> int:
        return 2 * x

    async with broker:
        transport = broker.transport
        publish = transport._publish_reply  # type: ignore[attr-defined]

        async def counting(queue: str, body: bytes, headers: dict[str, object] | None) -> None:
            lengths = (headers or {}).get(BATCH)
            published.append(len(lengths) if isinstance(lengths, list) else 1)
            await publish(queue, body, headers)

        transport._replies._publish = counting  # type: ignore[attr-defined]
        try:
            # Queued before the worker starts, so that it finishes many in a turn.
            handles = [await double.kiq(i) for i in range(300)]
            async with running_worker(broker, concurrency=200):
                results = await asyncio.gather(*(h.result(timeout=20) for h in handles))
        finally:
            await transport.delete_namespace()  # type: ignore[attr-defined]
    assert results == [2 * i for i in range(300)]
    assert sum(published) == 300
    assert max(published) > 1  # some replies shared a message


class _HeldPublish:
    """A publish that records each message's bodies and returns only when released."""

    def __init__(self, fail_first: bool = False) -> None:
        self.messages: list[list[bytes]] = []
        self.started = asyncio.Event()
        self._release: list[asyncio.Event] = []
        self._fail_first = fail_first

    async def __call__(self, queue: str, body: bytes, headers: dict[str, object] | None) -> None:
        bodies = split_batch(body, headers)
        assert bodies is not None
        self.messages.append(bodies)
        release = asyncio.Event()
        self._release.append(release)
        self.started.set()
        await release.wait()
        if self._fail_first and len(self.messages) == 1:
            raise aq.BrokerError("refused")

    async def release(self, n: int) -> None:
        """Let the ``n``-th message's publish return, once it has started."""
        while len(self._release) < n:
            self.started.clear()
            await self.started.wait()
        self._release[n - 1].set()


async def test_replies_finished_while_a_batch_is_sent_go_together_in_the_next() -> None:
    publish = _HeldPublish()
    batcher = ReplyBatcher(publish)
    first = asyncio.create_task(batcher.send("q", b"a"))
    await publish.started.wait()
    # Later turns, while "a" waits for its confirm: nothing more is published yet.
    later = [asyncio.create_task(batcher.send("q", body)) for body in (b"b", b"c")]
    await asyncio.sleep(0)
    other = asyncio.create_task(batcher.send("other", b"z"))  # another queue is not held up
    await publish.release(2)
    await other
    assert publish.messages == [[b"a"], [b"z"]]
    await publish.release(1)
    await first
    await publish.release(3)
    await asyncio.gather(*later)
    await batcher.close()
    assert publish.messages == [[b"a"], [b"z"], [b"b", b"c"]]


async def test_a_failed_batch_fails_its_own_replies_and_not_those_queued_behind_it() -> None:
    publish = _HeldPublish(fail_first=True)
    batcher = ReplyBatcher(publish)
    first = asyncio.create_task(batcher.send("q", b"a"))
    await publish.started.wait()
    second = asyncio.create_task(batcher.send("q", b"b"))
    await publish.release(1)
    with pytest.raises(aq.BrokerError):
        await first
    await publish.release(2)
    await second
    await batcher.close()
    assert publish.messages == [[b"a"], [b"b"]]


async def test_close_waits_for_replies_queued_behind_a_batch_in_flight() -> None:
    publish = _HeldPublish()
    batcher = ReplyBatcher(publish)
    sends = [asyncio.create_task(batcher.send("q", b"a"))]
    await publish.started.wait()
    sends.append(asyncio.create_task(batcher.send("q", b"b")))
    await asyncio.sleep(0)
    closing = asyncio.create_task(batcher.close())
    await publish.release(1)
    await publish.release(2)
    await closing
    assert all(send.done() for send in sends)
    assert publish.messages == [[b"a"], [b"b"]]


async def test_acks_in_any_order_over_many_turns_settle_everything_once() -> None:
    # Thousands of acks and some nacks, finishing out of order over many loop
    # turns, so that aiormq's bounded frame buffer fills and flushes overlap: a
    # frame sent out of order would name a settled tag, and RabbitMQ would close
    # the channel.
    connection = await aio_pika.connect(AMQP_URL)
    queue = f"aqt-batch-{uuid.uuid4().hex[:12]}"
    n = 3000
    async with connection:
        setup = await connection.channel()
        await setup.declare_queue(queue, auto_delete=False)
        try:
            for start in range(0, n, 500):
                await asyncio.gather(
                    *(
                        setup.default_exchange.publish(aio_pika.Message(b"x"), queue)
                        for _ in range(start, start + 500)
                    )
                )
            raw = await (await connection.channel()).get_underlay_channel()
            window, tags = await _tracked(raw, queue, n)
            order = random.Random(5).sample(tags, len(tags))

            async def finish(tag: int, turns: int) -> None:
                for _ in range(turns):
                    await asyncio.sleep(0)
                if tag % 7 == 0:
                    await window.nack(raw, tag)
                else:
                    await window.ack(raw, tag)

            await asyncio.gather(*(finish(tag, i % 13) for i, tag in enumerate(order)))
            await window.close()
            assert not raw.is_closed
            # Only the nacked ones come back, each once.
            await _settles_at(raw, queue, sum(1 for tag in tags if tag % 7 == 0))
        finally:
            await setup.queue_delete(queue)


async def test_tasks_finishing_out_of_order_each_run_once() -> None:
    # Finishing in random order over many turns, with thousands unsettled at once:
    # a wrong multiple ack closes the channel and RabbitMQ delivers again.
    broker = aq.Broker(f"{AMQP_URL}?prefix=aqt-{uuid.uuid4().hex[:12]}")
    runs: dict[int, int] = {}
    pause = random.Random(7)

    @broker.task
    async def nap(i: int) -> int:
        runs[i] = runs.get(i, 0) + 1
        await asyncio.sleep(pause.random() / 5)
        return i

    async with broker:
        try:
            handles = await asyncio.gather(*(nap.kiq(i) for i in range(2000)))
            async with running_worker(broker, concurrency=2000):
                results = await asyncio.gather(*(h.result(timeout=30) for h in handles))
        finally:
            await broker.transport.delete_namespace()  # type: ignore[attr-defined]
    assert results == list(range(2000))
    assert set(runs.values()) == {1}

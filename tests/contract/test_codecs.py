"""Compression and msgpack on every broker: what a producer sends compressed or
in msgpack comes back the same, one worker serves producers of every kind side
by side, and a body that would inflate past the limit is dead-lettered unread."""

from __future__ import annotations

import asyncio
import functools
import zlib
from collections.abc import Callable

import pytest
import zstandard

import aq
from aq.envelope import MAGIC, frame_info
from aq.message import TaskMessage, new_id
from aq.task import SendOptions
from aq.testing import running_worker

Make = Callable[..., aq.Broker]
BLOB = bytes(range(256)) * 40  # 10 KiB of bytes that are not text
TEXT = "the quick brown fox jumps over the lazy dog " * 240  # about 10 KB of JSON


def _echo(broker: aq.Broker) -> aq.Task[[bytes, str], tuple[bytes, str]]:
    @broker.task(name="echo")
    async def echo(blob: bytes, text: str) -> tuple[bytes, str]:
        return blob, text

    return echo


@pytest.mark.parametrize(
    ("serializer", "compression"),
    [("json", "zstd"), ("json", "zlib"), ("msgpack", None), ("msgpack", "zstd")],
)
async def test_a_round_trip_returns_what_was_sent(
    twin_of: Make, serializer: str, compression: str | None
) -> None:
    producer = twin_of(serializer=serializer, compression=compression)
    echo = _echo(producer)
    async with producer, running_worker(producer):
        assert await (await echo.kiq(BLOB, TEXT)).result(timeout=10) == (BLOB, TEXT)


async def test_one_worker_serves_json_msgpack_and_compressing_producers_side_by_side(
    broker: aq.Broker, twin_of: Make
) -> None:
    echo = _echo(broker)  # the worker's own broker writes plain JSON
    producers = [
        twin_of(serializer="msgpack"),
        twin_of(compression="zstd"),
        twin_of(serializer="msgpack", compression="zlib"),
    ]
    tasks = [echo] + [producer.task(name="echo")(echo.fn) for producer in producers]
    try:
        async with running_worker(broker):
            handles = [await task.kiq(BLOB, TEXT) for task in tasks]
            for handle in handles:
                assert await handle.result(timeout=10) == (BLOB, TEXT)
    finally:  # together: each waits up to a second for its reply reader to stop
        await asyncio.gather(*(producer.shutdown() for producer in producers))


async def test_a_worker_replies_in_the_content_type_of_the_task_message(
    broker: aq.Broker, twin_of: Make
) -> None:
    _echo(broker)  # the worker's own broker writes JSON
    producer = twin_of(serializer="msgpack")
    async with producer, running_worker(broker):
        inbox = await producer.transport.open_inbox()
        try:
            message = TaskMessage(new_id(), "echo", "default", args=[b"\x00", "x"])
            message.reply_to = inbox.address
            await producer.transport.publish("default", producer.encode(message))
            body = await inbox.get()
        finally:
            await inbox.close()
    assert frame_info(body).content_type == "application/msgpack"
    assert producer.codec.loads(body)["payload"] == [b"\x00", "x"]


async def test_compression_applies_per_call_per_task_and_above_the_threshold(
    twin_of: Make,
) -> None:
    producer = twin_of(compression="zlib", compress_above=2048)

    @producer.task(name="plain", compression="none")
    async def plain(text: str) -> None: ...

    @producer.task(name="packed")
    async def packed(text: str) -> None: ...

    def sent(task: aq.Task[[str], None], text: str, compression: str | None = None) -> bytes:
        message = task.message((text,), {}, SendOptions(compression=compression), None)
        return producer.encode(message, task)

    assert sent(packed, "x" * 100).startswith(b"{")  # under the threshold: bare JSON
    assert frame_info(sent(packed, TEXT)).compression_code == 1  # the broker's zlib
    assert sent(plain, TEXT).startswith(b"{")  # the task says none
    assert frame_info(sent(plain, TEXT, "zstd")).compression_code == 2  # the call says zstd


@functools.cache
def _bomb(stated: int, scheme: str) -> bytes:
    """A frame of JSON compressed with ``scheme`` stating ``stated`` bytes, whose
    payload inflates to 16 MiB (a zstd frame that does not say so itself, with
    the smallest window, so that only the bound on the output stops it)."""
    inflated = b'{"v":1,"pad":"' + b"x" * (16 << 20) + b'"}'
    small = zstandard.ZstdCompressionParameters.from_level(
        3, window_log=10, write_content_size=False
    )
    packed = (
        zstandard.ZstdCompressor(compression_params=small).compress(inflated)
        if scheme == "zstd"
        else zlib.compress(inflated, 9)
    )
    code = 2 if scheme == "zstd" else 1
    ct = b"application/json"
    return MAGIC + bytes((code << 1, len(ct))) + ct + stated.to_bytes(4, "big") + packed


@pytest.mark.parametrize("scheme", ["zstd", "zlib"])
async def test_a_decompression_bomb_is_dead_lettered_unexpanded(
    broker: aq.Broker, scheme: str
) -> None:
    @broker.task(name="double")
    async def double(x: int) -> int:
        return 2 * x

    lying = _bomb(1000, scheme)  # states 1,000 bytes
    honest = _bomb((16 << 20) + 16, scheme)  # states its true size, over the limit
    assert len(lying) < (16 << 20) // 100  # a small body: a hundredth of what it inflates to
    for body in (lying, honest):
        await broker.transport.publish("default", body)
    async with running_worker(broker) as worker:
        assert await (await double.kiq(21)).result(timeout=10) == 42
        await worker.wait_idle()
    letters = await broker.admin.dead_letters("default")
    assert sorted(letter.reason for letter in letters) == [
        "undecodable message: decompresses past the 1000 bytes its header states; "
        "not inflated further",
        f"undecodable message: decompresses to {(16 << 20) + 16} bytes, over "
        f"max_message_size ({broker.max_message_size}); not decompressed",
    ]


async def test_a_message_in_an_unknown_content_type_is_dead_lettered(broker: aq.Broker) -> None:
    @broker.task(name="double")
    async def double(x: int) -> int:
        return 2 * x

    ct = b"application/x-pickle"
    await broker.transport.publish("default", MAGIC + bytes((0, len(ct))) + ct + b"\x80\x04K\x05.")
    async with running_worker(broker) as worker:
        assert await (await double.kiq(21)).result(timeout=10) == 42
        await worker.wait_idle()
    [letter] = await broker.admin.dead_letters("default")
    assert letter.reason == "undecodable message: unknown content type 'application/x-pickle'"


async def test_a_workflows_later_steps_go_in_the_content_type_of_its_producer(
    broker: aq.Broker, twin_of: Make
) -> None:
    @broker.task(name="first")
    async def first() -> int:
        return 1

    @broker.task(name="then")
    async def then(x: int) -> int:
        return x + 1

    producer = twin_of(serializer="msgpack")
    theirs = [producer.task(name=t.name)(t.fn) for t in (first, then)]
    async with producer:
        # The worker's broker writes JSON; the second step waits in a queue no worker serves.
        chain = aq.chain(theirs[0].s(), theirs[1].s().options(queue="later"))
        await chain.kiq()
        async with running_worker(broker, queues=["default"]) as worker:
            consumer = await broker.transport.consume(["later"], 1)
            try:
                delivery = await consumer.get()
                body = delivery.body
                await delivery.requeue()
            finally:
                await consumer.close()
            await worker.wait_idle()
    assert frame_info(body).content_type == "application/msgpack"

"""Bounds are checked before parsing, by a real worker process (issue 18, part 4).

Bodies no aq producer would send are written straight into each broker with its
own client, as aq's transport writes a message but by hand (redis-py's XADD of
the ``b`` and ``n`` fields into the queue's stream, aio-pika's persistent publish
to the queue): 64 MiB of JSON, JSON nested 10,000 deep, a frame in a content type
aq does not read, and a zstd frame stating 1,000 bytes that inflates to 64 MiB.
An ``aq worker`` process dead-letters each with its reason, runs the task sent
behind them, and stays up, its peak memory bounded. tests/contract/test_bounds.py
and tests/contract/test_codecs.py are the in-process versions.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import pytest
import zstandard
from redis.asyncio import Redis

import aq
from aq.envelope import MAGIC
from aq.transport.amqp.topology import Names
from aq.transport.redis.keys import Keys
from tests.conftest import AMQP_URL, REDIS_URL, _delete_prefix, delete_amqp_namespace
from tests.test_cli import aq_worker

pytestmark = pytest.mark.slow

MIB = 1 << 20
#: The worker's max_message_size: aq's default, which tests/apps/remote.py keeps.
LIMIT = 4 * MIB
#: What the oversized body and the bomb's payload each come to.
HUGE = 64 * MIB
#: The size the bomb's frame states.
STATED = 1000


@dataclass(frozen=True)
class RawQueue:
    """The ``default`` queue of a fresh namespace, and how to write into it by hand."""

    url: str
    write: Callable[[bytes], Awaitable[None]]


@pytest.fixture(params=["redis", "amqp"])
async def raw_queue(request: pytest.FixtureRequest) -> AsyncIterator[RawQueue]:
    """A fresh namespace on the shared server of each broker, deleted afterwards."""
    prefix = f"aqtest-{uuid.uuid4().hex[:12]}"
    if request.param == "redis":
        url = f"{REDIS_URL}?prefix={prefix}"
        stream = Keys(prefix).queue("default").streams[0]  # priority 0
        client = Redis.from_url(REDIS_URL)

        async def xadd(body: bytes) -> None:
            await client.xadd(stream, {"b": body, "n": 0})  # as PUBLISH_MANY writes it

        try:
            yield RawQueue(url, xadd)
        finally:
            await client.aclose()
            await _delete_prefix(url)
        return
    url = f"{AMQP_URL}?prefix={prefix}"
    work = Names(prefix).queue("default").work
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()  # with publisher confirms

        async def publish(body: bytes) -> None:
            message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
            await channel.default_exchange.publish(message, routing_key=work)

        yield RawQueue(url, publish)
    finally:
        await connection.close()
        await delete_amqp_namespace(url)


def _oversized() -> bytes:
    return b'{"v":1,"pad":"' + b"x" * HUGE + b'"}'


def _nested() -> bytes:
    return b"[" * 10_000 + b"]" * 10_000


def _pickled() -> bytes:
    ct = b"application/x-pickle"
    return MAGIC + bytes((0, len(ct))) + ct + b"\x80\x04K\x05."


def _bomb() -> bytes:
    """A frame of zstd-compressed JSON stating ``STATED`` bytes whose payload
    inflates to ``HUGE`` (a zstd frame that does not say its size itself, with
    the smallest window, so that only the bound on the output stops it)."""
    inflated = b'{"v":1,"pad":"' + b"x" * HUGE + b'"}'
    small = zstandard.ZstdCompressionParameters.from_level(
        3, window_log=10, write_content_size=False
    )
    packed = zstandard.ZstdCompressor(compression_params=small).compress(inflated)
    ct = b"application/json"
    return MAGIC + bytes((2 << 1, len(ct))) + ct + STATED.to_bytes(4, "big") + packed


def _status(pid: int) -> dict[str, str]:
    """The fields of ``/proc/<pid>/status``: ``State``, ``VmRSS``, ``VmHWM``..."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {name: value.strip() for name, _, value in (line.partition(":") for line in lines)}


def _kib(value: str) -> int:
    number, unit = value.split()
    assert unit == "kB"
    return int(number)


async def _until_dead(broker: aq.Broker, count: int, seconds: float = 15) -> None:
    """Wait until ``default`` holds ``count`` dead letters: nothing tells this
    process when the worker has written one, so this polls the queue's counts."""
    async with asyncio.timeout(seconds):
        while True:
            if (await broker.admin.stats("default")).dead >= count:
                return
            await asyncio.sleep(0.05)


@pytest.mark.timeout(60)
async def test_a_worker_dead_letters_raw_bad_bodies_with_reasons_and_stays_up_in_bounded_memory(
    raw_queue: RawQueue,
) -> None:
    producer = aq.Broker(raw_queue.url)

    @producer.task(name="remote.add")  # the producer's view of tests/apps/remote.py
    async def add(a: int, b: int) -> int:
        raise NotImplementedError("runs in the worker process")

    oversized, nested, pickled, bomb = _oversized(), _nested(), _pickled(), _bomb()
    assert len(bomb) < LIMIT  # small enough to be opened: only the output bound stops it
    env = {"AQ_BROKER_URL": raw_queue.url}
    async with (
        aq_worker("--no-supervise", app="tests.apps.remote:broker", env=env) as worker,
        producer,
    ):
        await worker.wait_for("worker.started")  # its queue and consumer group exist now
        baseline = _kib(_status(worker.pid)["VmRSS"])
        for body in (oversized, nested, pickled, bomb):
            await raw_queue.write(body)
        assert await (await add.kiq(20, 22)).result(timeout=20) == 42
        await _until_dead(producer, 4)
        status = _status(worker.pid)
        letters = await producer.admin.dead_letters("default")
    assert not status["State"].startswith(("Z", "X")), status["State"]  # still up
    peak = _kib(status["VmHWM"])
    # Reading the 64 MiB entry and writing it back to dead-letter it takes two
    # copies of it at once on Redis (the client's read buffer and the bytes cut
    # from it) and three on RabbitMQ (the frames, the body joined from them, and
    # the frames it is cut into again): 128 and 193 MiB over the baseline. A worker
    # that also decoded it peaks at 256 MiB over on either; the bound lies between.
    assert peak - baseline < 3.5 * HUGE / 1024, f"baseline {baseline} KiB, peak {peak} KiB"
    reasons = {letter.body: letter.reason for letter in letters}
    assert len(letters) == len(reasons) == 4
    assert reasons[oversized] == (
        f"message of {len(oversized)} bytes is over max_message_size ({LIMIT}); not decoded"
    )
    assert reasons[nested].startswith("undecodable message: ")
    assert "depth limit exceeded" in reasons[nested]
    assert reasons[pickled] == "undecodable message: unknown content type 'application/x-pickle'"
    assert reasons[bomb] == (
        f"undecodable message: decompresses past the {STATED} bytes its header states; "
        "not inflated further"
    )

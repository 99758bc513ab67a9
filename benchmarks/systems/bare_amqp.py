"""The RabbitMQ ceiling: the drain done with aio-pika alone, no framework.

The producer publishes one small persistent JSON message per task to a durable
queue, with publisher confirms; the worker consumes with prefetch 1,000 and
acks each message. No results are sent: this is the most a consumer of one
queue can do over aio-pika on this machine, so every framework's drain reads
as a fraction of it.

The round trip is the least a pushed result can take: the producer publishes
(confirmed, persistent) a message naming its own exclusive reply queue, which it
consumes; the worker publishes the reply there, then acks.

    python -m benchmarks.systems.bare_amqp   (the worker)
"""

from __future__ import annotations

import asyncio
import os
import sys
from types import TracebackType

import aio_pika
import orjson

from benchmarks.systems import _mark

BROKER = "amqp"
LABEL = "aio-pika (bare)"
SETTINGS = (
    "prefetch 1000, one ack per message, persistent, confirms, no results kept; "
    "round trip: reply to the producer's exclusive queue"
)
WORKLOADS = ("drain", "round_trip")
QUEUE = "bare"
_BODY = orjson.dumps({"task": "noop", "args": [], "kwargs": {}})


def worker_argv(workload: str) -> list[str]:
    return [sys.executable, "-m", __name__]


class Client:
    def __init__(self, url: str) -> None:
        self._url = url

    async def __aenter__(self) -> Client:
        self._connection = await aio_pika.connect(self._url)
        channel = await self._connection.channel(publisher_confirms=True)
        await channel.declare_queue(QUEUE, durable=True)
        self._exchange = channel.default_exchange
        self._replies = await channel.declare_queue(exclusive=True, auto_delete=True)
        self._waiter: asyncio.Future[None] | None = None
        await self._replies.consume(self._on_reply, no_ack=True)
        return self

    async def _on_reply(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._connection.close()

    async def send(self, kind: str) -> None:
        message = aio_pika.Message(_BODY, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        await self._exchange.publish(message, routing_key=QUEUE)

    async def call(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        message = aio_pika.Message(
            _BODY, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, reply_to=self._replies.name
        )
        await self._exchange.publish(message, routing_key=QUEUE)
        await asyncio.wait_for(self._waiter, 30)


async def work(url: str) -> None:
    connection = await aio_pika.connect(url)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=1000)
    queue = await channel.declare_queue(QUEUE, durable=True)

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        orjson.loads(message.body)
        _mark.done("noop")
        if message.reply_to:
            reply = aio_pika.Message(b"null")
            await channel.default_exchange.publish(reply, routing_key=message.reply_to)
        await message.ack()

    await queue.consume(on_message)
    await asyncio.Future()  # until the driver stops the process


if __name__ == "__main__":
    asyncio.run(work(os.environ["AQBENCH_URL"]))

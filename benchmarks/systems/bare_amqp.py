"""The RabbitMQ ceiling: the drain done with aio-pika alone, no framework.

The producer publishes one small persistent JSON message per task to a durable
queue, with publisher confirms; the worker consumes with prefetch 1,000 and
acks each message. No results are sent: this is the most a consumer of one
queue can do over aio-pika on this machine, so every framework's drain reads
as a fraction of it.

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
SETTINGS = "prefetch 1000, one ack per message, persistent, confirms, no results"
WORKLOADS = ("drain",)
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
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._connection.close()

    async def send(self, kind: str) -> None:
        message = aio_pika.Message(_BODY, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        await self._exchange.publish(message, routing_key=QUEUE)

    async def call(self) -> None:
        raise NotImplementedError("the bare client has no results")


async def work(url: str) -> None:
    connection = await aio_pika.connect(url)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=1000)
    queue = await channel.declare_queue(QUEUE, durable=True)

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        orjson.loads(message.body)
        _mark.done("noop")
        await message.ack()

    await queue.consume(on_message)
    await asyncio.Future()  # until the driver stops the process


if __name__ == "__main__":
    asyncio.run(work(os.environ["AQBENCH_URL"]))

"""Benchmarks of aq on RabbitMQ (see benchmarks/broker_bench.py for the workloads).

Every queue and exchange a run declared is deleted at its end.

    python -m benchmarks.amqp_broker [--url amqp://guest:guest@127.0.0.1:5672/] [--tasks 20000]
"""

from __future__ import annotations

import asyncio

from aq.broker import DEFAULT_QUEUE
from aq.transport.amqp import AmqpTransport
from benchmarks.broker_bench import CLEANUP_TIMEOUT, main


async def delete_namespace(url: str) -> None:
    # A fresh transport has declared nothing yet: name the queue the tasks use,
    # so that its work, dead-letter and delay queues go too (reply queues are
    # deleted by the producers that opened them, control queues are exclusive).
    transport = AmqpTransport(url)
    async with asyncio.timeout(CLEANUP_TIMEOUT), transport:
        transport.declarer.declared.update([DEFAULT_QUEUE])
        await transport.delete_namespace()


if __name__ == "__main__":
    main("amqp", "amqp://guest:guest@127.0.0.1:5672/", delete_namespace)

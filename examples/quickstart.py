"""aq in one file: define tasks, run a worker, send work and await results.

Runs on the in-process memory:// broker, so it needs no servers:

    python examples/quickstart.py

With AQ_BROKER_URL set, the same tasks run on Redis or RabbitMQ, with the
worker started separately by ``aq worker examples.quickstart:broker``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import aq

broker = aq.Broker("memory://")


@dataclass
class Invoice:
    number: int
    issued: datetime
    amount: float


@broker.task
async def add(x: int, y: int) -> int:
    """The smallest task: runs on a worker, the result is pushed back."""
    return x + y


@broker.task(timeout=5, retries=3, retry_backoff=0.05)
async def fetch_rate(currency: str) -> float:
    """Fails on its first attempt to show retries with backoff."""
    if aq.context().attempt == 1:
        raise ConnectionError("rate service hiccup")
    return {"EUR": 1.08, "GBP": 1.27}.get(currency, 1.0)


@broker.task
async def total(invoices: list[Invoice]) -> float:
    """Dataclasses and datetimes cross the wire and arrive typed."""
    assert all(isinstance(inv.issued, datetime) for inv in invoices)
    return sum(inv.amount for inv in invoices)


@broker.task
async def countdown(start: int) -> AsyncIterator[int]:
    """An async-generator task: items stream back as they are produced."""
    for n in range(start, 0, -1):
        await aq.context().report_progress({"left": n})
        yield n


ticks: list[str] = []
three_ticks = asyncio.Event()


@broker.task(schedule=aq.every(seconds=0.2))
async def tick() -> None:
    """Runs by itself every 0.2 s, sent by the scheduler the worker runs."""
    ticks.append(aq.context().task_id)
    if len(ticks) == 3:
        three_ticks.set()


@broker.task
async def square(x: int) -> int:
    return x * x


@broker.task
async def add_all(numbers: list[int]) -> int:
    """A chord's body: given every member's result, once they are all in."""
    return sum(numbers)


@broker.task(unique_for=60)
async def build_report(report_id: int) -> str:
    """While one build of a report is queued or running, asking again joins it."""
    await asyncio.sleep(0.1)
    return f"report {report_id}"


async def main() -> None:
    async with broker, aq.Worker(broker, concurrency=100, scheduler=True):
        handle = await add.kiq(2, 3)
        print(f"add(2, 3) = {await handle.result(timeout=5)}  [task {handle.id}]")

        rate = await (await fetch_rate.kiq("EUR")).result(timeout=5)
        print(f"fetch_rate('EUR') = {rate} (after a retry)")

        now = datetime.now(UTC)
        invoices = [Invoice(1, now, 10.5), Invoice(2, now, 4.5)]
        print(f"total(invoices) = {await (await total.kiq(invoices)).result(timeout=5)}")

        stream = await countdown.kiq(3)
        print("countdown(3) streams:", [n async for n in stream.stream()])

        handles = await add.kiq_many(add.s(i, i) for i in range(1000))
        results = await asyncio.gather(*(h.result(timeout=10) for h in handles))
        print(f"1000 tasks sent at once and done, sum of results = {sum(results)}")

        chain = aq.chain(add.s(1, 2), square.s(), add.s(10))  # (1 + 2)² + 10
        print(f"chain(add, square, add) = {await (await chain.kiq()).result(timeout=5)}")
        chord = aq.chord(square.map(range(10)), add_all.s())
        print(f"chord(square.map(0..9), add_all) = {await (await chord.kiq()).result(timeout=5)}")

        first, again = await build_report.kiq(7), await build_report.kiq(7)
        print(f"build_report(7) twice: one task ({first.id == again.id}),", end=" ")
        print(f"both get {await again.result(timeout=5)!r}")

        await asyncio.wait_for(three_ticks.wait(), 5)
        print(f"tick ran on its schedule: {', '.join(ticks[:3])}")


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="  (log) %(levelname)s %(message)s")
    asyncio.run(main())

"""What a workflow costs: a group and a chord of 10,000 no-op members against
the same 10,000 tasks sent plainly, on Redis and on RabbitMQ.

One worker process (``aq worker``, concurrency 1000) runs against each broker;
this process is the producer. Each round, timed from the first send to the
last result in the producer:

* ``plain``: 10,000 ``noop.kiq()`` calls, 100 in flight at a time (as the
  suite's drain sends them), and every handle's result awaited;
* ``group``: ``aq.group(noop.s() for ...)``, until the group's result arrives;
* ``chord``: ``aq.chord(..., count.s())``, until the body's result arrives:
  its members are counted in the store (RabbitMQ's in the bench's Redis).

The figures are tasks per second (the median of ``--rounds`` rounds), the
group's throughput as a share of the plain path's (the goal: at least 70%),
and the chord's added cost per member over the group. Then what a web handler
fanning out 10,000 tasks waits for: 10,000 ``await noop.kiq()`` one after
another, against one ``await noop.kiq_many(...)`` (until it returns; the
worker drains them meanwhile).

    python -m benchmarks.workflows [--n 10000] [--rounds 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aq
from benchmarks.suite import prepare_rabbitmq
from benchmarks.systems import URLS

ROOT = Path(__file__).resolve().parent.parent
IN_FLIGHT = 100


async def _rounds(rounds: int, run: Callable[[], Awaitable[None]]) -> float:
    """The median wall time of ``rounds`` runs of ``run``."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        await run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def measure(url: str, store: str | None, n: int, rounds: int) -> dict[str, float]:
    env = os.environ | {"AQBENCH_URL": url, "AQBENCH_STORE": store or ""}
    if not store:
        env.pop("AQBENCH_STORE")
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aq",
        "worker",
        "benchmarks.workflow_app:broker",
        "--concurrency",
        "1000",
        "--log-level",
        "WARNING",
        cwd=ROOT,
        env=env,
    )
    broker = aq.Broker(url, store=store)

    @broker.task(name="bench.noop", timeout=60)
    async def noop() -> None:
        raise NotImplementedError("runs in the worker")

    @broker.task(name="bench.count", timeout=60)
    async def count(results: list[None]) -> int:
        raise NotImplementedError("runs in the worker")

    async def plain() -> None:
        handles = []
        for start in range(0, n, IN_FLIGHT):
            sends = (noop.kiq() for _ in range(start, min(n, start + IN_FLIGHT)))
            handles += await asyncio.gather(*sends)
        await asyncio.gather(*(h.result(timeout=120) for h in handles))

    async def one_by_one() -> None:
        for _ in range(n):
            await noop.kiq()

    async def bulk() -> None:
        await noop.kiq_many(noop.s() for _ in range(n))

    async def group() -> None:
        results = await (await aq.group(noop.s() for _ in range(n)).kiq()).result(timeout=120)
        assert len(results) == n

    async def chord() -> None:
        handle = await aq.chord((noop.s() for _ in range(n)), count.s()).kiq()
        assert await handle.result(timeout=120) == n

    try:
        async with broker:
            await (await noop.kiq()).result(timeout=60)  # the worker is up
            await plain()  # warm-up: connections, queues, the worker's caches
            seconds = {
                "plain": await _rounds(rounds, plain),
                "group": await _rounds(rounds, group),
                "chord": await _rounds(rounds, chord),
            }
            sends = {
                "one_by_one": await _rounds(rounds, one_by_one),
                "kiq_many": await _rounds(rounds, bulk),
            }
    finally:
        worker.kill()
        await worker.wait()
    figures = {f"{kind}_per_s": n / s for kind, s in seconds.items()}
    figures["group_vs_plain"] = seconds["plain"] / seconds["group"]
    figures["chord_us_per_member"] = (seconds["chord"] - seconds["group"]) / n * 1e6
    figures |= {f"send_{kind}_s": s for kind, s in sends.items()}
    return figures


async def main_async(n: int, rounds: int) -> dict[str, Any]:
    prefix = f"aqbench-workflows-{uuid.uuid4().hex[:8]}"
    store = f"{URLS['redis']}?prefix={prefix}-store"
    results = {
        "redis": await measure(f"{URLS['redis']}?prefix={prefix}", None, n, rounds),
        "amqp": await measure(f"{URLS['amqp']}?prefix={prefix}", store, n, rounds),
    }
    return {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "n": n, "brokers": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    prepare_rabbitmq()
    results = asyncio.run(main_async(args.n, args.rounds))
    print(f"workflows of {args.n} no-op members, tasks/s (median of {args.rounds} rounds):")
    for broker, f in results["brokers"].items():
        print(
            f"  {broker:<6} plain {f['plain_per_s']:7.0f}  group {f['group_per_s']:7.0f} "
            f"({f['group_vs_plain']:.0%} of plain)  chord {f['chord_per_s']:7.0f} "
            f"(+{f['chord_us_per_member']:.1f} us per member)  sending {args.n}: one by one "
            f"{f['send_one_by_one_s']:.2f} s, kiq_many {f['send_kiq_many_s']:.2f} s"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()

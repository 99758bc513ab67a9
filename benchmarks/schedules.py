"""How late a scheduled task starts: from its due time to the start of its run.

An idle worker and a scheduler run in one process against each broker, with a
schedule every 50 ms; each run records how long after its due time it
started. The figures are p50, p99 and the worst of ``--fires`` runs per
broker (the goal: p99 under 50 ms).

    python -m benchmarks.schedules [--fires 200] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import aq
from aq.testing import running_worker
from benchmarks.systems import URLS

INTERVAL = 0.05


async def measure(url: str, fires: int, store: str | None = None) -> dict[str, float]:
    broker = aq.Broker(url, store=store)
    lateness: list[float] = []
    enough = asyncio.Event()

    @broker.task(name="bench.tick", schedule=aq.every(seconds=INTERVAL), timeout=5)
    async def tick() -> None:
        lateness.append(time.time() - float(aq.context().headers["aq-due"]))
        if len(lateness) >= fires:
            enough.set()

    async with broker, running_worker(broker):
        scheduler = aq.Scheduler(broker, lease_time=5.0)
        running = asyncio.create_task(scheduler.run())
        try:
            await asyncio.wait_for(enough.wait(), fires * INTERVAL * 3 + 10)
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
    samples = sorted(x * 1000 for x in lateness[:fires])
    q = statistics.quantiles(samples, n=100)
    return {"p50_ms": q[49], "p99_ms": q[98], "max_ms": samples[-1], "fires": len(samples)}


async def main_async(fires: int) -> dict[str, Any]:
    prefix = f"aqbench-schedules-{uuid.uuid4().hex[:8]}"
    results = {
        "memory": await measure("memory://bench-schedules", fires),
        "redis": await measure(f"{URLS['redis']}?prefix={prefix}", fires),
        "amqp": await measure(f"{URLS['amqp']}?prefix={prefix}", fires),
    }
    return {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "brokers": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--fires", type=int, default=200)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = asyncio.run(main_async(args.fires))
    print(f"scheduled task start after its due time ({args.fires} fires, one every 50 ms):")
    for broker, figures in results["brokers"].items():
        print(
            f"  {broker:<7} p50 {figures['p50_ms']:.1f} ms  p99 {figures['p99_ms']:.1f} ms  "
            f"max {figures['max_ms']:.1f} ms"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""What time limits and retry policies cost per task: CPU per task, side by side.

Each variant declares one task and runs N of them with producer and worker in
this process on memory://, where nothing else (no network, no broker) costs
much, so a per-task cost shows at its largest. The figure is the process's
CPU time from the worker's start until every result is back, per task; the
variants run in alternate rounds and the medians are reported, with each as a
share of the plain task's rate. Two task bodies: a no-op, and one that awaits
ten times (``asyncio.sleep(0)``), since a soft time limit costs per ``await``.

    python -m benchmarks.policies [--tasks 20000] [--rounds 6] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from typing import Any

import aq

#: Each variant: the task's options and the worker's keywords.
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "plain": ({}, {}),
    "timeout": ({"timeout": 60}, {}),
    "timeout + soft_timeout": ({"timeout": 60, "soft_timeout": 50}, {}),
    "worker --default-timeout": ({}, {"default_timeout": 60}),
    "retry_on + dont_retry_on": (
        {"retries": 3, "retry_on": (ConnectionError,), "dont_retry_on": (ValueError,)},
        {},
    ),
}


async def cpu_per_task(
    options: dict[str, Any], worker: dict[str, Any], awaits: int, n: int
) -> float:
    """CPU microseconds per task of one variant (see the module docstring)."""
    broker = aq.Broker(f"memory://bench-{uuid.uuid4().hex}")

    @broker.task(name="bench.work", **options)
    async def work() -> None:
        for _ in range(awaits):
            await asyncio.sleep(0)

    async with broker:
        handles = [await work.kiq() for _ in range(n)]
        async with aq.Worker(broker, concurrency=1000, **worker):
            started = time.process_time()
            for handle in handles:
                await handle.result(timeout=60)
            return (time.process_time() - started) / n * 1e6


def measure(awaits: int, n: int, rounds: int) -> dict[str, dict[str, float]]:
    """Every variant, in alternate rounds; medians and shares of plain's rate."""
    runs: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(rounds):
        for name, (options, worker) in VARIANTS.items():
            runs[name].append(asyncio.run(cpu_per_task(options, worker, awaits, n)))
    plain = statistics.median(runs["plain"])
    return {
        name: {
            "cpu_us": statistics.median(values),
            "min_cpu_us": min(values),
            "of_plain_rate": plain / statistics.median(values),
        }
        for name, values in runs.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    results: dict[str, Any] = {"tasks": args.tasks, "rounds": args.rounds, "bodies": {}}
    for body, awaits in (("no-op", 0), ("ten awaits", 10)):
        rows = measure(awaits, args.tasks, args.rounds)
        results["bodies"][body] = rows
        print(f"\n{body}: {args.tasks:,} tasks on memory://, CPU per task, median of {args.rounds}")
        print(f"{'variant':<28} {'µs/task':>8} {'of plain':>9}")
        for name, row in rows.items():
            print(f"{name:<28} {row['cpu_us']:>8.1f} {row['of_plain_rate']:>9.0%}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
            fh.write("\n")


if __name__ == "__main__":
    main()

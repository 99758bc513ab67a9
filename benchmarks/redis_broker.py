"""Benchmarks of aq on Redis, producer and worker in separate processes.

Workloads (against the redis-server at --url, under a fresh key prefix):
  drain       N no-op tasks queued with no worker running, then one worker
              process (`aq worker`, concurrency 1000) started: tasks/s from its
              start until every result has reached the producer. The enqueue
              rate is reported too.
  round trip  sequential `await (await noop.kiq()).result()` against an idle
              worker: p50 / p95 / p99 latency in ms.

    python benchmarks/redis_broker.py [--url redis://127.0.0.1:6379/0] [--tasks 20000]
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
from pathlib import Path
from typing import Any

import aq

ROOT = Path(__file__).resolve().parent.parent


def _producer(url: str) -> tuple[aq.Broker, aq.Task[[], None]]:
    broker = aq.Broker(url)

    @broker.task(name="bench.noop")
    async def noop() -> None:
        return None

    return broker, noop


async def _start_worker(url: str) -> asyncio.subprocess.Process:
    env = dict(os.environ, AQ_BROKER_URL=url, PYTHONPATH=str(ROOT))
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aq",
        "worker",
        "benchmarks.bench_app:broker",
        "--concurrency",
        "1000",
        "--log-level",
        "WARNING",
        cwd=ROOT,
        env=env,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        await proc.wait()


async def drain(url: str, n: int) -> dict[str, float]:
    broker, noop = _producer(url)
    async with broker:
        started = time.perf_counter()
        handles = [await noop.kiq() for _ in range(n)]
        enqueue = time.perf_counter() - started
        worker = await _start_worker(url)
        try:
            first = time.perf_counter()
            await asyncio.gather(*(h.result(timeout=300) for h in handles))
            elapsed = time.perf_counter() - first
        finally:
            await _stop(worker)
    # Worker start-up (interpreter and imports) is inside `elapsed`: it is part of
    # what a user waits for, and the same for every system measured this way.
    return {"enqueue_per_s": n / enqueue, "drain_per_s": n / elapsed}


async def round_trip(url: str, n: int) -> dict[str, float]:
    broker, noop = _producer(url)
    async with broker:
        worker = await _start_worker(url)
        try:
            await (await noop.kiq()).result(timeout=60)  # the worker is up and warm
            for _ in range(50):
                await (await noop.kiq()).result(timeout=10)
            samples = []
            for _ in range(n):
                t = time.perf_counter()
                await (await noop.kiq()).result(timeout=10)
                samples.append((time.perf_counter() - t) * 1000)
        finally:
            await _stop(worker)
    q = statistics.quantiles(samples, n=100)
    return {"p50_ms": q[49], "p95_ms": q[94], "p99_ms": q[98]}


async def _delete_keys(url: str) -> None:
    transport = aq.Broker(url).transport
    async with transport:
        await transport.delete_namespace()  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description="aq on Redis")
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--round-trips", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    runs: list[dict[str, float]] = []
    for _ in range(args.repeat):
        url = f"{args.url}?prefix=aqbench-{uuid.uuid4().hex[:8]}"
        try:
            figures = asyncio.run(drain(url, args.tasks))
            figures |= asyncio.run(round_trip(url, args.round_trips))
        finally:
            asyncio.run(_delete_keys(url))
        runs.append(figures)
    summary: dict[str, Any] = {
        k: {
            "median": statistics.median(r[k] for r in runs),
            "min": min(r[k] for r in runs),
            "max": max(r[k] for r in runs),
        }
        for k in runs[0]
    }
    print(f"redis:// broker, worker in its own process, {args.repeat} runs, median (min-max)")
    for key, label, unit in [
        ("enqueue_per_s", f"enqueue {args.tasks} no-op kiq()", "tasks/s"),
        ("drain_per_s", f"drain {args.tasks} no-op tasks with results", "tasks/s"),
        ("p50_ms", "round trip p50", "ms"),
        ("p95_ms", "round trip p95", "ms"),
        ("p99_ms", "round trip p99", "ms"),
    ]:
        s = summary[key]
        fmt = "{:,.0f}" if unit == "tasks/s" else "{:.2f}"
        print(
            f"  {label:<44} {fmt.format(s['median'])} {unit}  "
            f"({fmt.format(s['min'])} - {fmt.format(s['max'])})"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

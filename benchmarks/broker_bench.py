"""Benchmarks of aq on a real broker, producer and worker in separate processes.

Workloads (against the server at --url, under a fresh name prefix per run):
  drain       N no-op tasks queued with no worker running, then one worker
              process (`aq worker`, concurrency 1000) started: tasks/s from its
              start until every result has reached the producer. The enqueue
              rate is reported too.
  round trip  sequential `await (await noop.kiq()).result()` against an idle
              worker: p50 / p95 / p99 latency in ms.

`benchmarks/redis_broker.py` and `benchmarks/amqp_broker.py` run them with their
broker's default URL and clean-up.
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
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import aq
from aq.broker import ENV_URL

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")

_STOP_TIMEOUT = 40.0  # seconds a worker gets to stop on SIGTERM (its shutdown timeout is 30)
CLEANUP_TIMEOUT = 60.0


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
        try:
            await asyncio.wait_for(proc.wait(), _STOP_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def _while_alive(proc: asyncio.subprocess.Process, work: Awaitable[T]) -> T:
    """``work``'s result, or an error as soon as the worker process exits."""
    job = asyncio.ensure_future(work)
    exited = asyncio.ensure_future(proc.wait())
    try:
        await asyncio.wait([job, exited], return_when=asyncio.FIRST_COMPLETED)
        if not job.done():
            raise RuntimeError(f"the worker exited with status {proc.returncode} mid-benchmark")
        return job.result()
    finally:
        for future in (job, exited):
            future.cancel()
        await asyncio.gather(job, exited, return_exceptions=True)


async def drain(url: str, n: int) -> dict[str, float]:
    broker, noop = _producer(url)
    async with broker:
        started = time.perf_counter()
        handles = [await noop.kiq() for _ in range(n)]
        enqueue = time.perf_counter() - started
        worker = await _start_worker(url)
        try:
            first = time.perf_counter()
            await _while_alive(worker, asyncio.gather(*(h.result(timeout=300) for h in handles)))
            elapsed = time.perf_counter() - first
        finally:
            await _stop(worker)
    # Worker start-up (interpreter and imports) is inside `elapsed`: it is part of
    # what a user waits for, and the same for every system measured this way.
    return {"enqueue_per_s": n / enqueue, "drain_per_s": n / elapsed}


async def _round_trips(noop: aq.Task[[], None], n: int) -> list[float]:
    await (await noop.kiq()).result(timeout=60)  # the worker is up and warm
    for _ in range(50):
        await (await noop.kiq()).result(timeout=10)
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        await (await noop.kiq()).result(timeout=10)
        samples.append((time.perf_counter() - t) * 1000)
    return samples


async def round_trip(url: str, n: int) -> dict[str, float]:
    broker, noop = _producer(url)
    async with broker:
        worker = await _start_worker(url)
        try:
            samples = await _while_alive(worker, _round_trips(noop, n))
        finally:
            await _stop(worker)
    q = statistics.quantiles(samples, n=100)
    return {"p50_ms": q[49], "p95_ms": q[94], "p99_ms": q[98]}


def _with_prefix(url: str, prefix: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}prefix={prefix}"


def main(
    scheme: str, default_url: str, cleanup: Callable[[str], Coroutine[Any, Any, None]]
) -> None:
    """Parse the command line, run the workloads ``--repeat`` times against
    ``--url`` (each under a fresh prefix, removed by ``cleanup(url)``), print and
    save the medians."""
    parser = argparse.ArgumentParser(description=f"aq on {scheme}://")
    parser.add_argument("--url", default=default_url)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--round-trips", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    # aq.Broker() prefers AQ_BROKER_URL to its argument: the producer must use --url.
    os.environ.pop(ENV_URL, None)

    runs: list[dict[str, float]] = []
    for _ in range(args.repeat):
        url = _with_prefix(args.url, f"aqbench-{uuid.uuid4().hex[:8]}")
        try:
            figures = asyncio.run(drain(url, args.tasks))
            figures |= asyncio.run(round_trip(url, args.round_trips))
        finally:
            asyncio.run(cleanup(url))
        runs.append(figures)
    summary: dict[str, Any] = {
        k: {
            "median": statistics.median(r[k] for r in runs),
            "min": min(r[k] for r in runs),
            "max": max(r[k] for r in runs),
        }
        for k in runs[0]
    }
    print(f"{scheme}:// broker, worker in its own process, {args.repeat} runs, median (min-max)")
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

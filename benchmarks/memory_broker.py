"""Benchmarks of one worker on the in-process memory:// broker.

Workloads (each run in a fresh event loop, medians over --repeat runs):
  enqueue  N no-op kiq() calls with no worker running: producer rate.
  drain    N queued no-op tasks, then one worker started: tasks/s until every
           result has been pushed back to its handle.
  fanout   N tasks of ``await asyncio.sleep(1)`` with concurrency N: wall time
           from the first kiq to the last result (ideal: just over 1 s).
  fanout, queued first: the same N tasks queued before the worker starts, timed
           from worker start until every one is acked: the worker's share alone.
  typed    N queued tasks with four annotated arguments (int, str, list[float],
           datetime), drained as above, beside the same tasks unannotated: what
           checking arguments against the annotations costs the worker; and the
           check alone, timed on its own per call.

    python -m benchmarks.memory_broker [--tasks 20000] [--fanout 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import gc
import json
import resource
import statistics
import time
import timeit
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aq
from aq.worker.runner import tune_gc


def _broker() -> tuple[aq.Broker, aq.Task[[], None], aq.Task[[], None]]:
    broker = aq.Broker(f"memory://bench-{uuid.uuid4().hex}")

    @broker.task(name="noop")
    async def noop() -> None:
        return None

    @broker.task(name="sleep1")
    async def sleep1() -> None:
        await asyncio.sleep(1)

    return broker, noop, sleep1


async def enqueue_and_drain(n: int) -> dict[str, float]:
    broker, noop, _ = _broker()
    async with broker:
        started = time.perf_counter()
        handles = [await noop.kiq() for _ in range(n)]
        enqueued = time.perf_counter()
        async with aq.Worker(broker, concurrency=1000):
            first = time.perf_counter()
            for handle in handles:
                await handle.result()
            drained = time.perf_counter()
    return {"enqueue_per_s": n / (enqueued - started), "drain_per_s": n / (drained - first)}


_ARGS: tuple[int, str, list[float], str] = (
    7,
    "report",
    [float(i) for i in range(10)],
    "2026-12-02T09:30:00+00:00",
)


async def typed(i: int, name: str, values: list[float], when: dt.datetime) -> None:
    return None


async def untyped(i, name, values, when):  # type: ignore[no-untyped-def]
    return None


async def drain_with_arguments(n: int) -> dict[str, float]:
    """Drain rate of tasks whose four arguments are checked, and of the same unannotated."""
    rates = {}
    for key, fn in (("drain_typed_per_s", typed), ("drain_untyped_per_s", untyped)):
        broker = aq.Broker(f"memory://bench-{uuid.uuid4().hex}")
        task: Any = broker.task(name="args")(fn)
        async with broker:
            handles = [await task.kiq(*_ARGS) for _ in range(n)]
            async with aq.Worker(broker, concurrency=1000):
                first = time.perf_counter()
                for handle in handles:
                    await handle.result()
                rates[key] = n / (time.perf_counter() - first)
    return rates


def argument_check_us() -> dict[str, float]:
    """Microseconds one call's argument check takes, typed and unannotated."""
    from aq.coerce import ArgumentConverter

    costs = {}
    args = list(_ARGS)
    for key, fn in (("check_typed_us", typed), ("check_untyped_us", untyped)):
        call = functools.partial(ArgumentConverter(fn), args, {})
        costs[key] = min(timeit.repeat(call, number=20_000, repeat=5)) / 20_000 * 1e6
    return costs


async def fanout_queued(n: int) -> dict[str, float]:
    broker, _, sleep1 = _broker()
    async with broker:
        for _ in range(n):
            await sleep1.kiq()  # handles dropped: only the worker's side is timed
        worker = aq.Worker(broker, concurrency=n)
        started = time.perf_counter()
        async with worker:
            await worker.wait_idle()
            wall = time.perf_counter() - started
    return {"fanout_queued_wall_s": wall}


async def fanout(n: int) -> dict[str, float]:
    broker, _, sleep1 = _broker()
    async with broker, aq.Worker(broker, concurrency=n):
        started = time.perf_counter()
        handles = [await sleep1.kiq() for _ in range(n)]
        await asyncio.gather(*(h.result() for h in handles))
        wall = time.perf_counter() - started
    return {"fanout_wall_s": wall}


def _repeat(fn: Callable[[], Awaitable[dict[str, float]]], times: int) -> dict[str, Any]:
    return _repeat_sync(lambda: asyncio.run(fn()), times)  # type: ignore[arg-type]


def _repeat_sync(fn: Callable[[], dict[str, float]], times: int) -> dict[str, Any]:
    runs: list[dict[str, float]] = []
    for _ in range(times):
        gc.collect()
        runs.append(fn())
    keys = runs[0].keys()
    return {
        k: {
            "median": statistics.median(r[k] for r in runs),
            "min": min(r[k] for r in runs),
            "max": max(r[k] for r in runs),
        }
        for k in keys
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--fanout", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument(
        "--default-gc",
        action="store_true",
        help="keep Python's default GC settings instead of the ones `aq worker` applies",
    )
    args = parser.parse_args()
    if not args.default_gc:
        tune_gc()

    results: dict[str, Any] = {}
    results.update(_repeat(lambda: enqueue_and_drain(args.tasks), args.repeat))
    results.update(_repeat(lambda: fanout(args.fanout), args.repeat))
    results.update(_repeat(lambda: fanout_queued(args.fanout), args.repeat))
    results.update(_repeat(lambda: drain_with_arguments(args.tasks), args.repeat))
    results.update(_repeat_sync(argument_check_us, args.repeat))
    results["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    gc_note = "default GC" if args.default_gc else "GC tuned as by `aq worker`"
    print(
        f"memory:// broker, producer and worker in one process, {gc_note}, "
        f"{args.repeat} runs, median (min-max)"
    )
    for key, label, fmt in [
        ("enqueue_per_s", f"enqueue {args.tasks} no-op kiq()", "{:,.0f} tasks/s"),
        ("drain_per_s", f"drain {args.tasks} no-op tasks with results", "{:,.0f} tasks/s"),
        ("fanout_wall_s", f"{args.fanout} x asyncio.sleep(1), end to end", "{:.3f} s"),
        ("fanout_queued_wall_s", f"{args.fanout} x asyncio.sleep(1), queued first", "{:.3f} s"),
        ("drain_typed_per_s", f"drain {args.tasks} tasks, 4 checked arguments", "{:,.0f} tasks/s"),
        ("drain_untyped_per_s", f"drain {args.tasks} tasks, same unannotated", "{:,.0f} tasks/s"),
        ("check_typed_us", "argument check per call, 4 annotated", "{:.2f} us"),
        ("check_untyped_us", "argument check per call, unannotated", "{:.2f} us"),
    ]:
        r = results[key]
        print(
            f"  {label:<48} {fmt.format(r['median'])}  "
            f"({fmt.format(r['min'])} - {fmt.format(r['max'])})"
        )
    print(f"  peak RSS of the process                          {results['peak_rss_mb']:.0f} MB")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()

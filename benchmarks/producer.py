"""aq's producer alone: what one ``kiq()`` costs, and where a round trip's time goes.

    python -m benchmarks.producer send URL [--n 20000]
        N no-op kiq() calls, 100 in flight (as the suite's enqueue), no worker:
        the rate and the producer's CPU time per kiq().
    python -m benchmarks.producer round-trip URL [--n 1000]
        N sequential kiq() + result() against a worker it starts: p50 of the
        kiq() alone and of the whole round trip.

A tool for A/B runs of one change (run it from each tree); the suite's figures
come from ``benchmarks.suite``. Use the benchmark's own database or vhost
(``redis://127.0.0.1:6379/15``, ``amqp://guest:guest@127.0.0.1:5672/aqbench``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time


async def send(n: int) -> str:
    from benchmarks.systems import _aq

    async with _aq.Client(os.environ["AQBENCH_URL"]) as client:
        await client.send("noop")
        started, cpu = time.perf_counter(), time.process_time()
        for _ in range(n // 100):
            await asyncio.gather(*(client.send("noop") for _ in range(100)))
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return f"{n / wall:,.0f} kiq()/s, {cpu / n * 1e6:.1f} µs of producer CPU per kiq()"


async def round_trip(n: int, module: str) -> str:
    from benchmarks.systems import _aq

    argv = _aq.worker_argv(module, "round_trip")
    worker = await asyncio.create_subprocess_exec(*argv)
    try:
        async with _aq.Client(os.environ["AQBENCH_URL"]):
            await (await _aq.noop.kiq()).result(timeout=30)
            sends, totals = [], []
            for _ in range(n):
                started = time.perf_counter()
                handle = await _aq.noop.kiq()
                sent = time.perf_counter()
                await handle.result(timeout=10)
                sends.append(sent - started)
                totals.append(time.perf_counter() - started)
    finally:
        worker.kill()
        await worker.wait()
    return (
        f"kiq() p50 {statistics.median(sends) * 1e3:.3f} ms, "
        f"round trip p50 {statistics.median(totals) * 1e3:.3f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["send", "round-trip"])
    parser.add_argument("url")
    parser.add_argument("--n", type=int, default=0)
    args = parser.parse_args()
    os.environ["AQBENCH_URL"] = args.url  # read by the adapter's broker at import
    if args.what == "send":
        coro = send(args.n or 20_000)
    else:
        module = "benchmarks.systems." + ("aq_redis" if args.url.startswith("redis") else "aq_amqp")
        coro = round_trip(args.n or 1000, module)
    try:
        import uvloop
    except ImportError:
        print(asyncio.run(coro))
    else:
        print(uvloop.run(coro))


if __name__ == "__main__":
    main()

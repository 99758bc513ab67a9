"""One measured run: the producer process of one system and one workload.

    python -m benchmarks.run_one SYSTEM WORKLOAD --url URL --n N --out FILE

The suite (benchmarks/suite.py) runs this with the system's own virtualenv,
after flushing the broker, under a hard time limit. It starts the system's
worker as a separate process (its own process group), measures, stops the
worker and writes the figures as JSON to FILE. Standard library only, besides
the adapter (see benchmarks/systems/__init__.py).

Workloads:
  drain       N no-op tasks enqueued with no worker running (the enqueue rate),
              then one worker started: tasks/s from its first completion to
              its N-th, and the worker's peak RSS.
  round_trip  N sequential enqueue-and-await-result of a no-op against an idle,
              warmed-up worker: p50 / p95 / p99 in ms.
  fanout      N tasks of ``await asyncio.sleep(1)`` sent to a running worker:
              wall time from the first enqueue to the N-th completion, and the
              worker's peak RSS.

Each workload has a time budget (``BUDGET``), so that a slow system cannot
stretch `make bench` past its limit: a drain's producer stops sending when its
budget runs out (the drain then has fewer tasks queued), a drain still going
when its own runs out is timed over the tasks done so far, a round trip stops
sampling, and a fan-out reports how many of its tasks had finished
(``fanout_done``) and the budget as its time. The figures say how many tasks
they cover (``*_count``).

The worker is stopped with SIGKILL: the broker is flushed before the next run,
and a graceful stop would only add its grace period to every run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import math
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Seconds: a drain's after its first completion, a round trip's sampling, a fan-out's
# from its first send, and the sending of a drain's tasks.
BUDGET = {"drain": 4.0, "round_trip": 3.0, "fanout": 6.0, "enqueue": 4.0}
SEND_BATCH = 100  # sends in flight at once while enqueueing
WARM_UP_CALLS = 50  # or as many as fit in WARM_UP_SECONDS
WARM_UP_SECONDS = 1.0
_POLL = 0.002  # seconds between looks for the marker file


class Worker:
    """The system's worker process, started in its own process group."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.argv = argv
        self.env = env
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Worker:
        with self.log.open("wb") as log:  # a file, not a pipe: a chatty worker never blocks
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                cwd=ROOT,
                env=self.env,
                start_new_session=True,
                stdout=log,
                stderr=log,
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        await self.proc.wait()

    def check(self) -> None:
        """Raise, with the end of its output, if the worker has exited."""
        assert self.proc is not None
        if self.proc.returncode is not None:
            tail = self.log.read_bytes()[-3000:].decode(errors="replace")
            raise RuntimeError(f"the worker exited with status {self.proc.returncode}:\n{tail}")


def _read_mark(path: Path) -> dict[str, float] | None:
    try:
        figures: dict[str, float] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    return figures


async def _wait_for_mark(
    path: Path, worker: Worker, budget: float, since: float | None = None
) -> dict[str, float]:
    """The marker once the worker has done every task, or what it says when
    ``budget`` seconds have passed since ``since`` (default: its first completion)."""
    while True:
        worker.check()
        # Blocking file reads are fine here: the driver's loop has nothing else to do.
        mark = _read_mark(path)
        if mark is not None and mark["done"]:
            return mark
        start = since if since is not None else mark["first"] if mark is not None else None
        if start is not None and time.monotonic() - start > budget:
            return mark or {"count": 0, "done": False, "rss_mb": math.nan}
        await asyncio.sleep(_POLL)


async def _first_call(client: Any, worker: Worker) -> None:
    """One no-op round trip, while checking that the starting worker stays up."""
    call = asyncio.ensure_future(client.call())
    while not call.done():
        worker.check()
        await asyncio.wait([call], timeout=0.05)
    await call


async def _send_all(client: Any, kind: str, n: int, budget: float = math.inf) -> int:
    """Send ``n`` tasks, ``SEND_BATCH`` at a time, or as many as ``budget`` seconds allow."""
    stop = time.monotonic() + budget
    sent = 0
    while sent < n and time.monotonic() < stop:
        batch = min(SEND_BATCH, n - sent)
        await asyncio.gather(*(client.send(kind) for _ in range(batch)))
        sent += batch
    return sent


def _worker(adapter: Any, workload: str, mark: Path, kind: str = "", n: int = 0) -> Worker:
    # PYTHONPATH: the worker imports the adapter as benchmarks.systems.<name>.
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        AQBENCH_MARK=str(mark),
        AQBENCH_KIND=kind,
        AQBENCH_COUNT=str(n),
    )
    return Worker(adapter.worker_argv(workload), env, mark.with_name("worker.log"))


async def drain(adapter: Any, url: str, n: int, mark: Path) -> dict[str, float]:
    async with adapter.Client(url) as client:
        started = time.monotonic()
        n = await _send_all(client, "noop", n, BUDGET["enqueue"])
        enqueue = time.monotonic() - started
        async with _worker(adapter, "drain", mark, "noop", n) as worker:
            done = await _wait_for_mark(mark, worker, BUDGET["drain"])
    return {
        "enqueue_per_s": n / enqueue,
        "enqueue_count": n,
        "drain_per_s": (done["count"] - 1) / (done["last"] - done["first"]),
        "drain_count": done["count"],
        "drain_cpu_us": done["cpu_s"] / max(1, done["count"] - 1) * 1e6,
        "drain_rss_mb": done["rss_mb"],
    }


async def round_trip(adapter: Any, url: str, n: int, mark: Path) -> dict[str, float]:
    async with (
        adapter.Client(url) as client,
        _worker(adapter, "round_trip", mark) as worker,
    ):
        await _first_call(client, worker)
        warm_until = time.perf_counter() + WARM_UP_SECONDS
        for _ in range(WARM_UP_CALLS):
            await client.call()
            if time.perf_counter() > warm_until:
                break
        samples: list[float] = []
        stop = time.perf_counter() + BUDGET["round_trip"]
        while len(samples) < n and (len(samples) < 20 or time.perf_counter() < stop):
            t = time.perf_counter()
            await client.call()
            samples.append((time.perf_counter() - t) * 1000)
    q = statistics.quantiles(samples, n=100)
    return {"p50_ms": q[49], "p95_ms": q[94], "p99_ms": q[98], "round_trip_count": len(samples)}


async def fanout(adapter: Any, url: str, n: int, mark: Path) -> dict[str, float]:
    async with (
        adapter.Client(url) as client,
        _worker(adapter, "fanout", mark, "sleep", n) as worker,
    ):
        await _first_call(client, worker)
        started = time.monotonic()
        await _send_all(client, "sleep", n)
        done = await _wait_for_mark(mark, worker, BUDGET["fanout"], since=started)
    wall = done["last"] - started if done["done"] else BUDGET["fanout"]
    return {"fanout_s": wall, "fanout_done": done["count"], "fanout_rss_mb": done["rss_mb"]}


WORKLOADS = {"drain": drain, "round_trip": round_trip, "fanout": fanout}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("system")
    parser.add_argument("workload", choices=sorted(WORKLOADS))
    parser.add_argument("--url", required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--out", help="write the figures here as JSON (default: stdout)")
    args = parser.parse_args()
    os.environ["AQBENCH_URL"] = args.url
    sys.path.insert(0, str(ROOT))
    adapter = importlib.import_module(f"benchmarks.systems.{args.system}")
    with tempfile.TemporaryDirectory(prefix="aqbench-") as tmp:
        mark = Path(tmp) / "mark.json"
        figures = asyncio.run(WORKLOADS[args.workload](adapter, args.url, args.n, mark))
    text = json.dumps(figures)
    if args.out:
        Path(args.out).write_text(text)
    else:
        print(text)


if __name__ == "__main__":
    main()

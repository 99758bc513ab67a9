"""The completion marker every benchmarked worker calls from its tasks.

Standard library only: it runs inside every system's worker process, in every
benchmark virtualenv. The driver (benchmarks/run_one.py) starts the worker with

  AQBENCH_MARK   a file to write when the count is reached
  AQBENCH_KIND   which task kind counts ("noop" or "sleep")
  AQBENCH_COUNT  how many completions of that kind to wait for

and the worker's tasks call ``done(kind)`` as their last statement. Every
``STEP`` completions, and at the count, the file is replaced with how many are
done, the monotonic clock (system-wide on Linux, so comparable with the
driver's) of the first and the latest completion, the worker process's CPU
time since the first, and its peak RSS so far: a driver whose time budget
runs out reads the rate so far. Counting in the worker, rather than awaiting
every result in the producer, times every system the same way whether its
results are pushed or polled.
"""

from __future__ import annotations

import json
import os
import resource
import time

_PATH = os.environ.get("AQBENCH_MARK", "")
_KIND = os.environ.get("AQBENCH_KIND", "")
_TARGET = int(os.environ.get("AQBENCH_COUNT", "0"))
STEP = 250
_count = 0
_first = 0.0
_first_cpu = 0.0


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def done(kind: str) -> None:
    """Count one finished task of ``kind``; write the marker every STEP and at the target."""
    global _count, _first, _first_cpu
    if kind != _KIND:
        return
    now = time.monotonic()
    if _count == 0:
        _first = now
        _first_cpu = _cpu()
    _count += 1
    if _count % STEP == 0 or _count == _TARGET:
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        figures = {
            "count": _count,
            "done": _count >= _TARGET,
            "first": _first,
            "last": now,
            "rss_mb": rss_mb,
            "cpu_s": _cpu() - _first_cpu,  # the worker process's, since the first completion
            "pid": os.getpid(),
        }
        partial = f"{_PATH}.partial"
        with open(partial, "w") as fh:
            json.dump(figures, fh)
        os.replace(partial, _PATH)

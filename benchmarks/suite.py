"""`make bench`: aq and its peers, side by side, in one run on this machine.

    python -m benchmarks.suite [--repeat 3] [--systems aq_redis,arq_redis] [--quick]

Every system (benchmarks/systems/) runs every workload it takes part in
(benchmarks/run_one.py), each run in fresh processes against a flushed broker
under a hard time limit. Repetitions go round all the systems in turn, so that
a slow minute of the machine's falls on every system alike. The figures go to
benchmarks/results/results.json, and the table and the plot made from them
(benchmarks/report.py) to results.md and results.png beside it; the table
compares aq with the run that was there before.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import redis

from benchmarks import report
from benchmarks.run_one import BUDGET
from benchmarks.systems import SYSTEMS, URLS, System

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SIZES = {"drain": 20_000, "round_trip": 1_000, "fanout": 10_000}
QUICK_SIZES = {"drain": 2_000, "round_trip": 100, "fanout": 1_000}
# Seconds per run, the hard limit beyond the budgets in run_one.py (for start-up,
# warm-up, and a fan-out's or a drain's sending).
TIME_LIMIT = {"drain": 60.0, "round_trip": 40.0, "fanout": 40.0}
VHOST = "aqbench"


def _rabbitmqctl(*args: str) -> str:
    done = subprocess.run(
        ["rabbitmqctl", "-q", *args], capture_output=True, text=True, check=False, timeout=60
    )
    if done.returncode != 0 and "already_exists" not in done.stderr + done.stdout:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def prepare_rabbitmq() -> None:
    """Create the benchmark's own virtual host (idempotent)."""
    _rabbitmqctl("add_vhost", VHOST)
    _rabbitmqctl("set_permissions", "-p", VHOST, "guest", ".*", ".*", ".*")


async def _delete_queues(names: list[str]) -> None:
    connection = await aio_pika.connect(URLS["amqp"])
    async with connection:
        for name in names:
            channel = await connection.channel()
            await channel.queue_delete(name)
            await channel.close()


def flush(broker: str) -> None:
    """Empty the broker: the benchmark's Redis database, and for RabbitMQ also every
    queue of its vhost (systems on RabbitMQ may keep results in that database)."""
    client = redis.Redis.from_url(URLS["redis"])
    client.flushdb()
    client.close()
    if broker == "redis":
        return
    names = _rabbitmqctl("list_queues", "-p", VHOST, "--no-table-headers", "name").split()
    if names:
        asyncio.run(_delete_queues(names))


def _sweep(token: str) -> None:
    """Kill every process a run left behind: they all carry its token in their environment."""
    needle = f"AQBENCH_RUN={token}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)


def run(system: System, workload: str, n: int) -> dict[str, float] | str:
    """One measured run: its figures, or why there are none."""
    flush(system.broker)
    token = uuid.uuid4().hex
    python = ROOT / system.venv / "bin" / "python"
    with tempfile.TemporaryDirectory(prefix="aqbench-") as tmp:
        out = Path(tmp) / "figures.json"
        argv = [str(python), "-m", "benchmarks.run_one", system.name, workload]
        argv += ["--url", URLS[system.broker], "--n", str(n), "--out", str(out)]
        env = dict(os.environ, AQBENCH_RUN=token, PYTHONPATH=str(ROOT))
        env.pop("AQ_BROKER_URL", None)
        proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, start_new_session=True, stderr=subprocess.PIPE, text=True
        )
        try:
            _, stderr = proc.communicate(timeout=TIME_LIMIT[workload])
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return f"timed out after {TIME_LIMIT[workload]:.0f} s"
        finally:
            _sweep(token)
        if proc.returncode != 0:
            last = stderr.strip().splitlines()[-1:] or ["no output"]
            return f"failed: {last[0][:200]}"
        figures: dict[str, float] = json.loads(out.read_text())
        return figures


def _ask(system: System, code: str, *args: str) -> Any:
    """What ``code``, run by the system's own python, prints as JSON."""
    done = subprocess.run(
        [str(ROOT / system.venv / "bin" / "python"), "-c", code, *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    return json.loads(done.stdout)


def versions(system: System) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys;"
        "print(json.dumps({d: m.version(d) for d in sys.argv[1:]}))"
    )
    found: dict[str, str] = _ask(system, code, *system.packages)
    return found


def _describe(system: System) -> dict[str, Any]:
    code = (
        "import importlib, json, sys; a = importlib.import_module(sys.argv[1]);"
        "print(json.dumps({'label': a.LABEL, 'settings': a.SETTINGS,"
        " 'workloads': list(a.WORKLOADS), 'target': getattr(a, 'TARGET', 0.8)}))"
    )
    described: dict[str, Any] = _ask(system, code, f"benchmarks.systems.{system.name}")
    return described


def summarise(runs: list[dict[str, float] | str]) -> dict[str, Any]:
    good = [r for r in runs if isinstance(r, dict)]
    problems = [r for r in runs if isinstance(r, str)]
    figures: dict[str, Any] = {}
    for key in good[0] if good else []:
        values = [r[key] for r in good]
        figures[key] = {
            "median": statistics.median(values),
            "min": min(values),
            "max": max(values),
            "runs": values,
        }
    return {"figures": figures, "problems": problems}


def _server_versions() -> dict[str, str]:
    client = redis.Redis.from_url(URLS["redis"])
    redis_version = str(client.info("server")["redis_version"])
    client.close()
    status = _rabbitmqctl("version").strip()
    return {"redis-server": redis_version, "rabbitmq-server": status}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--systems", help="comma-separated adapter names (default: all)")
    parser.add_argument("--workloads", help="comma-separated workloads (default: all)")
    parser.add_argument("--quick", action="store_true", help="a tenth of the sizes: a smoke run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    chosen = set(args.systems.split(",")) if args.systems else None
    systems = [s for s in SYSTEMS if chosen is None or s.name in chosen]
    wanted = set(args.workloads.split(",")) if args.workloads else set(SIZES)
    sizes = QUICK_SIZES if args.quick else SIZES
    if any(s.broker == "amqp" for s in systems):
        prepare_rabbitmq()

    started = time.monotonic()
    described = {s.name: _describe(s) | {"packages": versions(s)} for s in systems}
    runs: dict[tuple[str, str], list[dict[str, float] | str]] = {}
    for rep in range(args.repeat):
        for system in systems:
            for workload in described[system.name]["workloads"]:
                if workload not in wanted:
                    continue
                result = run(system, workload, sizes[workload])
                runs.setdefault((system.name, workload), []).append(result)
                shown = result if isinstance(result, str) else json.dumps(result)
                print(f"[{rep + 1}/{args.repeat}] {system.name} {workload}: {shown}", flush=True)

    results: dict[str, Any] = {
        "meta": {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
            "python": platform.python_version(),
            "servers": _server_versions(),
            "repeat": args.repeat,
            "sizes": sizes,
            "budgets": BUDGET,
            "seconds": round(time.monotonic() - started),
        },
        "systems": {},
    }
    for system in systems:
        entry = described[system.name] | {
            "broker": system.broker,
            "ceiling": system.ceiling,
            "variant": system.variant,
        }
        for workload in entry["workloads"]:
            if (system.name, workload) in runs:
                summary = summarise(runs[(system.name, workload)])
                entry.setdefault("figures", {}).update(summary["figures"])
                entry.setdefault("problems", []).extend(summary["problems"])
        results["systems"][system.name] = entry

    args.out.mkdir(parents=True, exist_ok=True)
    previous_path = args.out / "results.json"
    previous = json.loads(previous_path.read_text()) if previous_path.exists() else None
    previous_path.write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "results.md").write_text(report.markdown(results, previous))
    report.plot(results, args.out / "results.png")
    print(f"\nwrote {args.out}/results.md, results.json and results.png")
    print(report.markdown(results, previous))
    sys.exit(0)


if __name__ == "__main__":
    main()

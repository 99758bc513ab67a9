"""What signing, compression and msgpack cost and save: tasks carrying 10 KB of
JSON arguments, drained by one worker, on each broker, side by side.

For each broker (memory://, Redis, RabbitMQ) and each way of encoding, N tasks
whose one argument is about 10 KB of JSON records are queued with no worker
running, then one worker in the same process drains them; the figure is
tasks/s from the worker's start until every result is back. Beside each rate:
the bytes of one task message as it goes on the wire, and the rate as a share
of plain JSON's. Then what signing costs where it shows most: the CPU time
per no-op task with producer and worker in one process on memory://, without
and with signing, in alternate rounds. The per-message costs of the envelope
alone (encode and open, with and without a signature) are timed apart.

    python -m benchmarks.codecs [--tasks 5000] [--repeat 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import timeit
import uuid
from typing import Any

import aq
from aq.message import TaskMessage, new_id
from aq.task import SendOptions

KEY = "benchmark-key-of-at-least-thirty-two-bytes"
URLS = {
    "memory": "memory://bench-{id}",
    "redis": "redis://127.0.0.1:6379/15?prefix=aqbench-codecs-{id}",
    "amqp": "amqp://guest:guest@127.0.0.1:5672/?prefix=aqbench-codecs-{id}",
}
#: Each way of encoding: the options of its broker.
CODECS: dict[str, dict[str, Any]] = {
    "json": {},
    "json + zstd": {"compression": "zstd"},
    "json + zlib": {"compression": "zlib"},
    "msgpack": {"serializer": "msgpack"},
    "msgpack + zstd": {"serializer": "msgpack", "compression": "zstd"},
    "json, signed": {"signing_keys": {"bench": KEY}},
    "json + zstd, signed": {"compression": "zstd", "signing_keys": {"bench": KEY}},
}


def records() -> list[dict[str, Any]]:
    """About 10 KB of JSON: the kind of rows a task is often handed."""
    return [
        {
            "id": 10_000 + i,
            "email": f"user{i}@example.com",
            "name": f"Customer number {i}",
            "plan": ("free", "team", "enterprise")[i % 3],
            "score": round(i * 1.37, 2),
            "active": i % 4 != 0,
        }
        for i in range(80)
    ]


def _broker(kind: str, options: dict[str, Any]) -> aq.Broker:
    broker = aq.Broker(URLS[kind].format(id=uuid.uuid4().hex[:10]), **options)

    @broker.task(name="bench.rows", timeout=60)
    async def rows(items: list[dict[str, Any]]) -> int:
        return len(items)

    return broker


async def drain(kind: str, options: dict[str, Any], n: int) -> dict[str, float]:
    broker = _broker(kind, options)
    task = broker.tasks["bench.rows"]
    payload = records()
    message = task.message((payload,), {}, SendOptions(), None)
    size = len(broker.encode(message, task))
    try:
        async with broker:
            handles = [await task.kiq(payload) for _ in range(n)]
            async with aq.Worker(broker, concurrency=1000):
                started = time.perf_counter()
                for handle in handles:
                    await handle.result(timeout=60)
                drained = time.perf_counter()
    finally:
        if kind != "memory":
            await _delete(broker)
    return {"drain_per_s": n / (drained - started), "message_bytes": float(size)}


async def _delete(broker: aq.Broker) -> None:
    transport: Any = broker.transport
    async with transport:
        await transport.delete_namespace()


async def noop_cpu(signed: bool, n: int) -> float:
    """CPU microseconds per no-op task, producer and worker in this process on
    memory://, from the worker's start until every result is back: the worst
    case for signing, where nothing else (no network, no broker) costs much."""
    options: dict[str, Any] = {"signing_keys": {"bench": KEY}} if signed else {}
    broker = aq.Broker(f"memory://bench-{uuid.uuid4().hex}", **options)

    @broker.task(name="bench.noop", timeout=60)
    async def noop() -> None:
        return None

    async with broker:
        handles = [await noop.kiq() for _ in range(n)]
        async with aq.Worker(broker, concurrency=1000):
            started = time.process_time()
            for handle in handles:
                await handle.result(timeout=60)
            return (time.process_time() - started) / n * 1e6


def signing_cpu(n: int, rounds: int) -> dict[str, float]:
    """:func:`noop_cpu` without and with signing, in alternate rounds; medians."""
    runs: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(rounds):
        for signed in (False, True):
            runs[signed].append(asyncio.run(noop_cpu(signed, n)))
    plain, with_keys = statistics.median(runs[False]), statistics.median(runs[True])
    return {
        "plain_cpu_us": plain,
        "signed_cpu_us": with_keys,
        "signed_of_plain_rate": plain / with_keys,
    }


def envelope_us() -> dict[str, float]:
    """Microseconds to encode and to open one small task message, bare and signed."""
    plain = aq.Broker("memory://bench-envelope").codec
    signed = aq.Broker("memory://bench-envelope-signed", signing_keys={"bench": KEY}).codec
    obj = TaskMessage(new_id(), "bench.noop", "default", reply_to="inbox:x").to_dict()
    bare, framed = plain.dumps(obj), signed.dumps(obj)
    figures = {}
    for name, codec, body in (("plain", plain, bare), ("signed", signed, framed)):
        for what, run in (
            ("encode", lambda c=codec: c.dumps(obj)),
            ("open", lambda c=codec, b=body: c.open(b)),
        ):
            runs = timeit.repeat(run, number=20_000, repeat=5)
            figures[f"{what}_{name}_us"] = min(runs) / 20_000 * 1e6
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--brokers", default="memory,redis,amqp")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    results: dict[str, Any] = {"tasks": args.tasks, "repeat": args.repeat, "brokers": {}}
    for kind in args.brokers.split(","):
        rows: dict[str, Any] = {}
        for name, options in CODECS.items():
            runs = [asyncio.run(drain(kind, options, args.tasks)) for _ in range(args.repeat)]
            rates = [r["drain_per_s"] for r in runs]
            rows[name] = {
                "drain_per_s": {
                    "median": statistics.median(rates),
                    "min": min(rates),
                    "max": max(rates),
                },
                "message_bytes": runs[0]["message_bytes"],
            }
        base = rows["json"]
        for row in rows.values():
            row["of_json"] = row["drain_per_s"]["median"] / base["drain_per_s"]["median"]
            row["bytes_of_json"] = row["message_bytes"] / base["message_bytes"]
        results["brokers"][kind] = rows
        print(f"\n{kind}: {args.tasks:,} tasks of 10 KB JSON arguments, median of {args.repeat}")
        print(f"{'encoding':<22} {'drain/s':>9} {'of json':>8} {'bytes':>7} {'of json':>8}")
        for name, row in rows.items():
            print(
                f"{name:<22} {row['drain_per_s']['median']:>9,.0f} {row['of_json']:>8.0%} "
                f"{row['message_bytes']:>7,.0f} {row['bytes_of_json']:>8.0%}"
            )
    results["signing_cpu"] = cpu = signing_cpu(20_000, 2 * args.repeat)
    print(
        f"\nno-op tasks on memory://, producer and worker in one process, CPU per task: "
        f"{cpu['plain_cpu_us']:.1f} µs plain, {cpu['signed_cpu_us']:.1f} µs signed "
        f"(a rate {cpu['signed_of_plain_rate']:.0%} of plain's)"
    )
    results["envelope_us"] = envelope_us()
    print("\nenvelope alone, one small task message (µs):")
    for name, value in results["envelope_us"].items():
        print(f"  {name:<18} {value:6.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
            fh.write("\n")


if __name__ == "__main__":
    main()

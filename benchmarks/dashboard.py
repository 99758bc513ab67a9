"""How many monitoring events a second the dashboard can take in.

The dashboard adds nothing to a worker's work (it only reads the event stream
the workers send with ``--events``, measured in the suite as ``aq_*_events``);
what it must do is keep up with that stream. Two figures:

  board   events a second :class:`aq.web.board.Board` takes in, in process
          (each task's received and succeeded events; history of 10,000 tasks).
  redis   events a second through Redis: batches of 200 events written to the
          event stream as fast as one producer can, read back, decoded and fed
          to a board by the dashboard's collector in the same process; timed
          from the first write to the last event fed.

    python -m benchmarks.dashboard [--events 200000] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from typing import Any

import aq
from aq.monitor.wire import Event, encode_events
from aq.web.board import Board
from aq.web.collect import Collector

REDIS_URL = os.environ.get("AQ_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
BATCH = 200


def _events(count: int, now: float) -> list[dict[str, Any]]:
    """``count`` events: the received and succeeded events of ``count // 2`` tasks."""
    events: list[dict[str, Any]] = []
    for n in range(count // 2):
        common: dict[str, Any] = {"task_id": f"bench-{n}", "name": "bench.work"}
        common |= {"queue": "default", "attempt": 1, "worker": "bench.1", "host": "bench"}
        events.append({"type": "task-received", "ts": now} | common)
        events.append({"type": "task-succeeded", "ts": now, "runtime": 0.001} | common)
    return events


def board_rate(count: int) -> float:
    """Events a second a board takes in."""
    board = Board("bench", 10_000)
    decoded = [Event(e["type"], e["ts"], e) for e in _events(count, time.time())]
    began = time.perf_counter()
    for item in decoded:
        board.feed(item)
    return count / (time.perf_counter() - began)


async def redis_rate(count: int) -> float:
    """Events a second from Redis's event stream into a board."""
    url = f"{REDIS_URL}?prefix=aqbench-{uuid.uuid4().hex[:8]}"
    watcher, producer = aq.Broker(url), aq.Broker(url)
    board = Board("bench", 10_000)
    collector = Collector(watcher, board)
    events = _events(count, time.time())
    batches = [
        encode_events(events[i : i + BATCH], producer.serializer)
        for i in range(0, len(events), BATCH)
    ]
    async with watcher, producer:
        await collector.start()  # subscribed to the event stream
        try:
            began = time.perf_counter()
            for body in batches:
                await producer.transport.publish_events(body)
            while board.top.events_seen < count:  # noqa: ASYNC110 - timed to 5 ms
                await asyncio.sleep(0.005)
            took = time.perf_counter() - began
        finally:
            await collector.stop()
            await watcher.transport.delete_namespace()  # type: ignore[attr-defined]
    return count / took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    boards = [board_rate(args.events) for _ in range(args.repeat)]
    # The stream keeps ~1,000 batches: stay under it, so nothing is trimmed unread.
    redis_events = min(args.events, 150_000)
    redis = [asyncio.run(redis_rate(redis_events)) for _ in range(args.repeat)]
    figures = {
        "board_events_per_s": statistics.median(boards),
        "redis_events_per_s": statistics.median(redis),
        "events": args.events,
        "redis_events": redis_events,
    }
    print(f"dashboard board  {figures['board_events_per_s']:>10,.0f} events/s (in process)")
    print(f"dashboard redis  {figures['redis_events_per_s']:>10,.0f} events/s (stream to board)")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(figures, out, indent=2)


if __name__ == "__main__":
    main()

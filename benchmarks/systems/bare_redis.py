"""The Redis ceiling: the drain done with redis-py alone, no framework.

The producer XADDs one small JSON message per task; the worker reads with
XREADGROUP up to 1,000 entries at a time and XACKs each batch in one call. No
results are stored: this is the most a consumer of one stream can do over
redis-py on this machine, so every framework's drain reads as a fraction of it.

The round trip is the least a pushed result can take: the producer XADDs a
message naming its reply stream and blocks in XREAD on that stream; the worker,
blocked in XREADGROUP, XADDs the reply there and acks.

    python -m benchmarks.systems.bare_redis   (the worker)
"""

from __future__ import annotations

import asyncio
import os
import sys
from types import TracebackType
from typing import Any, cast

import orjson
import redis.asyncio as redis
from redis.exceptions import ResponseError

from benchmarks.systems import _mark

BROKER = "redis"
LABEL = "redis-py (bare)"
SETTINGS = (
    "XREADGROUP COUNT 1000, one XACK per batch, no results kept; "
    "round trip: reply XADDed to the producer's stream, read with a blocking XREAD"
)
WORKLOADS = ("drain", "round_trip")
STREAM = "bare:stream"
REPLIES = "bare:replies"
GROUP = "bare"
_BODY = orjson.dumps({"task": "noop", "args": [], "kwargs": {}})


async def _ensure_group(client: redis.Redis) -> None:
    try:
        await client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def worker_argv(workload: str) -> list[str]:
    return [sys.executable, "-m", __name__]


class Client:
    def __init__(self, url: str) -> None:
        self._redis = redis.Redis.from_url(url)
        self._last: Any = "0-0"

    async def __aenter__(self) -> Client:
        await _ensure_group(self._redis)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._redis.aclose()

    async def send(self, kind: str) -> None:
        await self._redis.xadd(STREAM, {"body": _BODY})

    async def call(self) -> None:
        await self._redis.xadd(STREAM, {"body": _BODY, "reply": REPLIES})
        reply = cast(
            "list[Any]", await self._redis.xread({REPLIES: self._last}, count=1, block=30_000)
        )
        if not reply:
            raise TimeoutError("no reply within 30 s")
        self._last = reply[0][1][0][0]


async def work(url: str) -> None:
    client = redis.Redis.from_url(url)
    await _ensure_group(client)
    while True:
        reply = cast(
            "list[Any]",
            await client.xreadgroup(GROUP, "c1", {STREAM: ">"}, count=1000, block=1000),
        )
        for _stream, entries in reply:
            ids = []
            for entry_id, fields in entries:
                orjson.loads(fields[b"body"])
                ids.append(entry_id)
                _mark.done("noop")
                if b"reply" in fields:
                    await client.xadd(fields[b"reply"], {"body": b"null"})
            await client.xack(STREAM, GROUP, *ids)


if __name__ == "__main__":
    asyncio.run(work(os.environ["AQBENCH_URL"]))

"""Sending the commands of one event-loop turn to Redis in one pipeline.

A worker finishing hundreds of tasks at once would otherwise pay one round
trip per reply and one per ack. :class:`Batcher` queues every command issued
during one turn of the event loop and sends them together on the next turn,
one pipeline (not a transaction: each command keeps its own atomicity, the
scripts theirs), resolving each caller's future with its own result or error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

__all__ = ["Batcher"]

Command = Callable[[Pipeline], Any]


class Batcher:
    """Queues commands and flushes them in pipelines of at most ``max_batch``."""

    def __init__(self, client: Redis, max_batch: int = 1000) -> None:
        self._client = client
        self._max_batch = max_batch
        self._pending: list[tuple[Command, asyncio.Future[Any]]] = []
        self._scheduled = False
        self._running: set[asyncio.Task[None]] = set()

    async def run(self, command: Command) -> Any:
        """Queue ``command`` (a function adding one command to a pipeline); await its result."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((command, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), self._max_batch):
            task = asyncio.create_task(self._send(pending[start : start + self._max_batch]))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _send(self, batch: list[tuple[Command, asyncio.Future[Any]]]) -> None:
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for command, _ in batch:
                    command(pipe)
                results = await pipe.execute(raise_on_error=False)
        except BaseException as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue  # its caller was cancelled; the command ran anyway
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

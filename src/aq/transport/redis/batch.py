"""Sending the commands of one event-loop turn to Redis in one pipeline.

A worker finishing hundreds of tasks at once would otherwise pay one round
trip per reply and one per ack. :class:`Batcher` queues every command issued
during one turn of the event loop and sends them together on the next turn,
one pipeline (not a transaction: each command keeps its own atomicity, the
scripts theirs), resolving each caller's future with its own result or error.

Scripts go as plain EVALSHA. redis-py's own pipeline support for scripts asks
the server ``SCRIPT EXISTS`` before every pipeline, one more round trip each
time; here a script the server has lost (after a restart or ``SCRIPT FLUSH``)
comes back as a ``NOSCRIPT`` error, and only then is it loaded and its
commands sent again (a script that was not found did not run).

A *merged* script call (:meth:`Batcher.run_merged`) goes further: every call of
the same script in one turn becomes a single EVALSHA carrying all their keys
and arguments, for scripts written to take any number of such groups and
return one result per group. The worker's reply-and-ack goes this way, so a
turn that finishes 500 tasks sends Redis one command, not a thousand; so do a
turn's publishes. A merged call made while the batcher is idle
(nothing queued, nothing in flight) is sent at once instead, so a lone
``kiq()`` or reply does not wait a turn for company that is not coming.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from aq.transport.kit import LoopTurn, complete
from aq.transport.kit.turns import share_outcome

__all__ = ["Batcher"]

Command = Callable[[Pipeline], Any]
# One queued command: how to add it to a pipeline, who waits for it, and the
# script it runs (None for a plain command), for loading it again on NOSCRIPT.
_Item = tuple[Command, "asyncio.Future[Any]", AsyncScript | None]
# One call waiting to be merged: its keys, its arguments, who waits for it.
_Part = tuple[list[Any], list[Any], "asyncio.Future[Any]"]


class Batcher:
    """Queues commands and flushes them in pipelines of at most ``max_batch``."""

    def __init__(self, client: Redis, max_batch: int = 1000) -> None:
        self._client = client
        self._max_batch = max_batch
        self._pending: list[_Item] = []
        self._merged: dict[AsyncScript, list[_Part]] = {}
        self._turn = LoopTurn(self._flush)
        self._direct = 0  # merged calls sent at once, outside a pipeline

    async def run(self, command: Command) -> Any:
        """Queue ``command`` (a function adding one command to a pipeline); await its result."""
        return await self._queue(command, None)

    async def run_script(self, script: AsyncScript, keys: list[Any], args: list[Any]) -> Any:
        """Queue one EVALSHA of ``script``; await its result."""
        sha, n = script.sha, len(keys)
        return await self._queue(lambda pipe: pipe.evalsha(sha, n, *keys, *args), script)

    async def run_merged(self, script: AsyncScript, keys: list[Any], args: list[Any]) -> Any:
        """Queue one group of ``keys`` and ``args`` for a single call of ``script``
        with every other group queued for it this turn; await this group's result.

        The script reads its KEYS and ARGV as consecutive groups of the sizes
        every caller uses, and returns a list with one result per group. Its keys
        may lie in any hash slots, so merged calls serve single-node Redis only.
        """
        turn = self._turn
        if not (turn.requested or turn.running or self._direct):
            # Nothing queued or in flight: waiting a turn would only add latency.
            self._direct += 1
            try:
                return (await self._evalsha(script, keys, args))[0]
            finally:
                self._direct -= 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._merged.setdefault(script, []).append((keys, args, future))
        self._turn.request()
        return await future

    async def _evalsha(self, script: AsyncScript, keys: list[Any], args: list[Any]) -> Any:
        try:
            return await self._client.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            script.sha = await self._client.script_load(script.script)
            return await self._client.evalsha(script.sha, len(keys), *keys, *args)

    async def _queue(self, command: Command, script: AsyncScript | None) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((command, future, script))
        self._turn.request()
        return await future

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        merged, self._merged = self._merged, {}
        for script, parts in merged.items():
            for start in range(0, len(parts), self._max_batch):
                pending.append(self._merge(script, parts[start : start + self._max_batch]))
        for start in range(0, len(pending), self._max_batch):
            batch = pending[start : start + self._max_batch]
            self._turn.start(self._send(batch))

    @staticmethod
    def _merge(script: AsyncScript, parts: list[_Part]) -> _Item:
        """One EVALSHA for all of ``parts``; its result is shared out among their futures."""
        keys = [k for part in parts for k in part[0]]
        args = [a for part in parts for a in part[1]]
        sha, n = script.sha, len(keys)
        whole: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        futures = [future for _, _, future in parts]
        whole.add_done_callback(functools.partial(share_outcome, futures))
        return (lambda pipe: pipe.evalsha(sha, n, *keys, *args)), whole, script

    async def _send(self, batch: list[_Item]) -> None:
        await complete([future for _, future, _ in batch], self._results(batch))

    async def _results(self, batch: list[_Item]) -> list[Any]:
        results = await self._execute(batch)
        missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
        if missing:  # the server lost its scripts: load them, send those again
            for script in {batch[i][2] for i in missing}:
                if script is not None:
                    script.sha = await self._client.script_load(script.script)
            again = await self._execute([batch[i] for i in missing])
            for i, result in zip(missing, again, strict=True):
                results[i] = result
        return results

    async def _execute(self, batch: list[_Item]) -> list[Any]:
        async with self._client.pipeline(transaction=False) as pipe:
            for command, _, _ in batch:
                command(pipe)
            results: list[Any] = await pipe.execute(raise_on_error=False)
        return results

"""Consuming Redis queues: claim, hand out, keep alive, settle, reclaim, schedule.

One :class:`RedisConsumer` serves a worker. For each queue it runs:

* a **fetcher** that reads new entries with a Lua script, highest priority
  stream first and never more than the free prefetch capacity; when nothing is
  ready it blocks in XREADGROUP on all the queue's streams (no polling);
* a **scheduler** that moves due delayed messages from the sorted set into
  their streams with an atomic script, so exactly one worker moves each;
* a **reclaimer** that takes over entries whose worker stopped refreshing them
  for a visibility timeout (XAUTOCLAIM); each comes out with its delivery count
  raised, for the worker's crash policy to judge (aq.worker.crashes).

A consumer of isolation streams (``consume(..., isolated=True)``) runs the
same loops over each queue's isolation stream, without a scheduler, and never
holds more than its prefetch (one, for an isolation worker): its fetchers claim
only by the reserved Lua read and merely wait for news with a plain XREAD, and
its reclaimer counts the reservations too.

Claims of running tasks are refreshed by the worker's heartbeat through
:meth:`RedisDelivery.keep_alive` (XCLAIM JUSTID), and claims of entries still
buffered here by the consumer itself. Nothing here takes a lock, so a worker
killed at any point leaves nothing that blocks the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
from collections.abc import Awaitable
from typing import Any

from aq import background
from aq.errors import BrokerError
from aq.logs import event
from aq.transport.kit import BufferedConsumer, ReconnectDelay
from aq.transport.kit.consumer import wake
from aq.transport.redis.connection import (
    CONNECTION_ERRORS,
    group_gone,
    raise_if_cancelling,
    retrying,
    translated,
)
from aq.transport.redis.context import RedisContext
from aq.transport.redis.delivery import RedisDelivery
from aq.transport.redis.keys import GROUP, QueueKeys

__all__ = ["RedisConsumer"]

log = logging.getLogger("aq.redis")

_BLOCK_MS = 1_000
_SCHEDULER_IDLE = 0.5  # longest wait between looks at the delayed set
_MOVE_BATCH = 500
_DEAD_CONSUMER_IDLE = 3600.0  # a live consumer is heard from every second or so
_RESTORE_QUIET = 60.0  # seconds between warnings that a queue's groups were restored


class RedisConsumer(BufferedConsumer[RedisDelivery]):
    """See the module docstring."""

    def __init__(
        self,
        context: RedisContext,
        queues: list[QueueKeys],
        prefetch: int,
        heartbeat_interval: float | None,
    ) -> None:
        super().__init__(prefetch)
        self.context = context
        self.client = context.client
        self.queues = queues
        self.name = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"
        self.settings = context.settings
        self._heartbeat_interval = heartbeat_interval
        self._reserved = 0
        self._room: asyncio.Future[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._restored: dict[str, float] = {}  # queue -> when its groups were last restored

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        for keys in self.queues:
            await self.context.ensure_groups(keys)
        for keys in self.queues:
            self._spawn(f"aq-fetch-{keys.name}", functools.partial(self._fetch, keys))
            if not keys.is_isolation:  # nothing is ever delayed into an isolation stream
                self._spawn(f"aq-schedule-{keys.name}", functools.partial(self._schedule, keys))
        self._spawn("aq-reclaim", self._reclaim)
        self._spawn("aq-buffer-heartbeat", self._keep_buffer_alive)

    def _spawn(self, name: str, loop: background.Loop) -> None:
        self._tasks.append(background.start(name, loop))

    async def close(self) -> None:
        if not self._stop_handing_out():
            return
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # A read cancelled while Redis answered leaves entries pending under this
        # consumer's name that never reached it: they are returned with the rest.
        with contextlib.suppress(BrokerError, *CONNECTION_ERRORS):
            for keys in self.queues:
                await self._take_own_pending(keys)
        returning = list(self._unsettled)
        results = await asyncio.gather(*(d.release() for d in returning), return_exceptions=True)
        for delivery, result in zip(returning, results, strict=True):
            if isinstance(result, BrokerError):  # left pending: reclaimed after the timeout
                log.warning("could not requeue %s on close: %s", delivery.entry_id, result)
        await self._leave_groups()

    async def _leave_groups(self) -> None:
        """Remove this consumer from its groups, so `aq queues` counts live workers.

        Only from the streams where it holds nothing, checked and done in one
        script: deleting a consumer drops its pending entries.
        """
        leave = self.context.script("LEAVE_GROUPS")
        with contextlib.suppress(BrokerError), translated("leave the consumer groups"):
            for keys in self.queues:
                await leave(keys=list(keys.streams), args=[GROUP, self.name])

    # -- handing out -----------------------------------------------------------------

    def _add(
        self,
        keys: QueueKeys,
        stream: Any,
        entry_id: Any,
        fields: Any,
        times: int,
        *,
        recovered: bool = False,
    ) -> bool:
        """Hold a claimed entry and hand it out; whether it was new to this consumer.

        ``recovered``: taken over (reclaimed, or pending under this consumer's name),
        so it may be held already; a fresh read's entries never are.
        """
        stream, entry_id = _text(stream), _text(entry_id)
        if recovered and self._holds(stream, entry_id):
            return False  # claimed twice (a reclaim of an entry just recovered)
        body, previous = _fields(fields)
        self.hand_out(RedisDelivery(self, keys, stream, entry_id, body, previous + times))
        return True

    def _free(self) -> int:
        return self.prefetch - len(self._unsettled) - self._reserved

    async def _wait_for_room(self) -> None:
        if self._room is None or self._room.done():
            self._room = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._room)

    def _forgotten(self, delivery: RedisDelivery) -> None:
        wake(self._room)

    async def settle(
        self,
        delivery: RedisDelivery,
        script: str,
        keys: list[Any],
        args: list[Any],
        merged: bool,
    ) -> None:
        """Settle ``delivery`` once with a script, retried through outages of up to
        ``publish_timeout`` (the worker's hand-off then waits longer, see
        aq.worker.handoff); an entry left pending after that is reclaimed by another
        worker, so it is not lost.

        ``merged``: one of the ``*_MANY`` scripts, sent as one call with every
        other settlement of this event-loop turn.
        """
        if delivery.settled:
            return
        try:  # the common case, in this one coroutine
            await self._settling(script, keys, args, merged)
        except Exception:  # retried through an outage, translated to aq's errors
            await retrying(
                f"settle {delivery.entry_id}",
                lambda: self._settling(script, keys, args, merged),
                self.settings.publish_timeout,
            )
        else:
            raise_if_cancelling()
        delivery.mark_settled()

    def _settling(
        self, script: str, keys: list[Any], args: list[Any], merged: bool
    ) -> Awaitable[Any]:
        context = self.context
        if merged:
            return context.batcher.run_merged(context.script(script), keys, args)
        return context.run_script(script, keys, args)

    # -- background loops ------------------------------------------------------------

    async def _fetch(self, keys: QueueKeys) -> None:
        read = self.context.script("READ")
        streams = list(keys.by_priority)
        delays = ReconnectDelay()
        failing = ""  # the error last reported, so a lasting one is logged once
        reconnected = False
        while True:
            raise_if_cancelling()
            free = self._free()
            if free <= 0:
                await self._wait_for_room()
                continue
            try:
                if reconnected:
                    await self._take_own_pending(keys)
                    reconnected = False
                self._reserved += free
                try:
                    entries = await read(keys=streams, args=[GROUP, self.name, free])
                    raise_if_cancelling()
                finally:
                    self._reserved -= free
                    wake(self._room)  # other queues' fetchers may read now
                if not entries and keys.is_isolation:
                    # Wait without claiming: an isolation worker holds one message at
                    # most, so nothing may be taken but by the reserved read above.
                    await self.client.xread(dict.fromkeys(streams, "$"), block=_BLOCK_MS)
                    raise_if_cancelling()
                elif not entries:
                    entries = await self._block(keys, streams)
                    raise_if_cancelling()
                delays.reset()
            except CONNECTION_ERRORS as exc:
                raise_if_cancelling()
                event(log, logging.WARNING, "redis.reconnecting", queue=keys.name, error=exc)
                reconnected = True
                await delays.wait()
                continue
            except Exception as exc:
                raise_if_cancelling()
                if group_gone(exc):
                    if not await self._restore_groups(keys):  # Redis refuses: not in a hot loop
                        await delays.wait()
                    continue
                # Anything else (a read-only replica, out of memory): say so once, retry.
                if str(exc) != failing:
                    event(log, logging.ERROR, "redis.fetch_failed", queue=keys.name, error=exc)
                    failing = str(exc)
                await delays.wait()
                continue
            if failing:
                event(log, logging.INFO, "redis.fetch_resumed", queue=keys.name)
                failing = ""
            for stream, entry_id, fields in entries:
                self._add(keys, stream, entry_id, fields, 1)

    async def _take_own_pending(self, keys: QueueKeys) -> None:
        """Take the entries pending under this consumer's name that it does not hold:
        Redis gave them to a read whose answer was lost with its connection (or was
        cancelled). They would otherwise wait a visibility timeout to be reclaimed.
        Read with XPENDING and XRANGE, which leave every delivery count as it is: they
        were never run, so the lost delivery does not count."""
        for stream in keys.by_priority:
            pending: Any = await self.client.xpending_range(
                stream, GROUP, min="-", max="+", count=self.prefetch + 100, consumername=self.name
            )
            for entry in pending:
                entry_id = _text(entry["message_id"])
                if self._holds(stream, entry_id):
                    continue
                rows: Any = await self.client.xrange(stream, min=entry_id, max=entry_id)
                for found_id, fields in rows:
                    self._add(keys, stream, found_id, fields, 1, recovered=True)

    def _holds(self, stream: str, entry_id: str) -> bool:
        return any(d.entry_id == entry_id and d.stream == stream for d in self._unsettled)

    async def _block(self, keys: QueueKeys, streams: list[str]) -> list[Any]:
        # At most one entry per stream, so a burst overshoots prefetch by at most
        # a few entries; the Lua read takes the rest in bulk next time round.
        result: Any = await self.client.xreadgroup(
            GROUP, self.name, dict.fromkeys(streams, ">"), count=1, block=_BLOCK_MS
        )
        entries = []
        for stream, items in result or ():
            for entry_id, fields in items:
                entries.append((stream, entry_id, fields))
        order = {s: i for i, s in enumerate(streams)}
        entries.sort(key=lambda e: order.get(_text(e[0]), 0))
        return entries

    async def _schedule(self, keys: QueueKeys) -> None:
        move = self.context.script("MOVE_DUE")
        script_keys = [keys.delayed, keys.dead, *keys.streams]
        retrying = False  # an outage is reported once, not every half second
        while True:
            raise_if_cancelling()
            wait = _SCHEDULER_IDLE
            try:
                moved, next_due, malformed = await move(
                    keys=script_keys, args=[time.time(), _MOVE_BATCH, keys.name]
                )
                raise_if_cancelling()
                retrying = False
                if malformed:
                    event(
                        log,
                        logging.WARNING,
                        "redis.malformed_delayed",
                        queue=keys.name,
                        count=malformed,
                        action="dead-lettered",
                    )
                if int(moved) >= _MOVE_BATCH:
                    continue
                if next_due:
                    wait = min(wait, max(0.0, float(next_due) - time.time()))
            except CONNECTION_ERRORS as exc:
                raise_if_cancelling()
                if not retrying:
                    event(log, logging.WARNING, "redis.scheduler_retry", queue=keys.name, error=exc)
                retrying = True
            await asyncio.sleep(wait)

    async def _reclaim(self) -> None:
        reclaim = self.context.script("RECLAIM")
        idle_ms = int(self.settings.visibility_timeout * 1000)
        interval = min(30.0, max(0.5, self.settings.visibility_timeout / 2))
        rounds = 0
        while True:
            raise_if_cancelling()
            rounds += 1
            if rounds % 100 == 1:
                await self.forget_dead_consumers(_DEAD_CONSUMER_IDLE)
            for keys in self.queues:
                for stream in keys.by_priority:
                    # Not _free(): a fetcher's momentary reservation must not make the
                    # reclaimer skip a round; at worst a few extra entries wait buffered.
                    # An isolation consumer respects it: it must never hold two.
                    free = (
                        self._free() if keys.is_isolation else self.prefetch - len(self._unsettled)
                    )
                    if free <= 0:
                        break
                    try:
                        claimed = await reclaim(
                            keys=[stream], args=[GROUP, self.name, idle_ms, free]
                        )
                        raise_if_cancelling()
                    except CONNECTION_ERRORS:
                        raise_if_cancelling()
                        break
                    except Exception as exc:
                        if not group_gone(exc):
                            raise
                        await self._restore_groups(keys)
                        break
                    self._take_reclaimed(keys, stream, claimed)
            await asyncio.sleep(interval)

    async def _restore_groups(self, keys: QueueKeys) -> bool:
        """Create the queue's groups again after someone deleted a stream or group;
        whether that worked.

        Every loop of the queue meets the deletion; one warning per minute says so.
        """
        now = time.monotonic()
        if now - self._restored.get(keys.name, -_RESTORE_QUIET) >= _RESTORE_QUIET:
            event(
                log,
                logging.WARNING,
                "redis.group_restored",
                queue=keys.name,
                note="a stream or the consumer group of this queue was deleted while this "
                "worker consumed it; created again",
            )
        self._restored[keys.name] = now
        try:
            await self.context.ensure_groups(keys)
        except BrokerError:
            return False
        return True

    async def forget_dead_consumers(self, idle: float) -> int:
        """Drop consumers silent for ``idle`` seconds that hold nothing (dead workers)."""
        removed = 0
        for keys in self.queues:
            for stream in keys.streams:
                with contextlib.suppress(BrokerError), translated("forget dead consumers"):
                    removed += int(
                        await self.context.script("FORGET_IDLE_CONSUMERS")(
                            keys=[stream], args=[GROUP, int(idle * 1000), self.name]
                        )
                    )
        return removed

    def _take_reclaimed(self, keys: QueueKeys, stream: str, claimed: list[Any]) -> None:
        if not claimed:
            return
        for entry_id, fields, times in claimed:
            # The crash policy judges its count.
            self._add(keys, stream, entry_id, fields, int(times), recovered=True)
        event(
            log,
            logging.WARNING,
            "redis.reclaimed",
            queue=keys.name,
            count=len(claimed),
            note="taken over from a worker that stopped refreshing them",
        )

    async def _keep_buffer_alive(self) -> None:
        interval = self._heartbeat_interval or 20.0
        while True:
            raise_if_cancelling()
            await asyncio.sleep(interval)
            for delivery in list(self._ready):
                with contextlib.suppress(BrokerError):
                    await delivery.keep_alive()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _fields(fields: Any) -> tuple[bytes, int]:
    """(body, earlier deliveries) from an entry's fields, a dict or a flat list."""
    if isinstance(fields, dict):
        body = fields.get(b"b", b"")
        count = fields.get(b"n", b"0")
    else:
        pairs = dict(zip(fields[::2], fields[1::2], strict=False))
        body = pairs.get(b"b", b"")
        count = pairs.get(b"n", b"0")
    try:
        return body, int(count)
    except (TypeError, ValueError):
        return body, 0

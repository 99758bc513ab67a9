"""Looking into RabbitMQ queues and repairing them: counts, dead letters, purges.

Everything here runs on short-lived plain channels, because RabbitMQ answers a
passive declaration of a missing queue by closing the channel; a missing
queue simply counts as empty. Counts come from ``queue.declare-ok``, which
reports ready messages and consumers but not unacknowledged ones (the
transport adds those its own consumers hold). Dead letters are browsed with
``basic.get`` and handed back with a requeueing ``basic.nack``, which returns
them to their places in the queue.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiormq.abc
from aiormq import spec
from aiormq.abc import DeliveredMessage
from aiormq.exceptions import ChannelNotFoundEntity

from aq.transport.admin import DeadLetter
from aq.transport.amqp.context import DEAD_AT, DEAD_QUEUE, REASON, AmqpContext
from aq.transport.amqp.topology import LEVELS, QueueNames

__all__ = [
    "Counts",
    "dead_letters",
    "delete_declared",
    "purge_declared",
    "purge",
    "purge_dead",
    "requeue_dead",
    "stats",
]

#: Headers dropped when a dead letter goes back to its queue.
_DEAD_ONLY = frozenset(
    (REASON, DEAD_AT, DEAD_QUEUE, "x-aq-requeues", "x-aq-eta", "x-death", "x-delivery-count")
) | frozenset(("x-first-death-exchange", "x-first-death-queue", "x-first-death-reason"))

#: How RabbitMQ's own dead-lettering reasons read in aq's dead-letter list.
_SERVER_REASONS = {
    "delivery_limit": "delivered too many times without being settled (its workers keep dying)",
    "expired": "expired in RabbitMQ (message TTL)",
    "maxlen": "dropped by RabbitMQ's queue length limit",
    "rejected": "rejected without requeue",
}


@dataclass(frozen=True, slots=True)
class Counts:
    ready: int
    delayed: int
    dead: int
    consumers: int
    isolated: int


async def _declare_ok(
    context: AmqpContext, queues: Sequence[str], stop_at_missing: bool = False
) -> list[spec.Queue.DeclareOk | None]:
    """Passive declarations of ``queues``, in order; ``None`` for a missing one."""
    results: list[spec.Queue.DeclareOk | None] = []
    pending = list(queues)
    while pending:
        async with context.raw_channel() as channel:
            while pending:
                name = pending.pop(0)
                try:
                    results.append(await channel.queue_declare(name, passive=True))
                except ChannelNotFoundEntity:
                    results.append(None)
                    if stop_at_missing:
                        results += [None] * len(pending)
                        pending.clear()
                    break  # the server closed this channel: open another
    return results


async def ready(context: AmqpContext, work: str) -> tuple[int, int] | None:
    """(ready messages, consumers) of the queue ``work``, or ``None`` if it is missing."""
    [ok] = await _declare_ok(context, [work])
    return None if ok is None else (ok.message_count or 0, ok.consumer_count or 0)


async def stats(context: AmqpContext, names: QueueNames) -> Counts:
    """Ready, delayed and dead counts, and consumers, of one queue.

    Read in the order messages flow (the longest delay level first, the work
    queue last), so a message moving on while it is counted is counted twice
    at worst, never missed.
    """
    delays = await _declare_ok(context, names.delays[::-1], stop_at_missing=True)
    work, isolated, dead = await _declare_ok(context, [names.work, names.isolated, names.dead])
    return Counts(
        ready=work.message_count or 0 if work else 0,
        delayed=sum(ok.message_count or 0 for ok in delays if ok),
        dead=dead.message_count or 0 if dead else 0,
        consumers=work.consumer_count or 0 if work else 0,
        isolated=isolated.message_count or 0 if isolated else 0,
    )


async def _purge(context: AmqpContext, queues: Sequence[str]) -> int:
    existing = [
        name
        for name, ok in zip(queues, await _declare_ok(context, queues), strict=True)
        if ok is not None
    ]
    count = 0
    async with context.raw_channel() as channel:
        for name in existing:
            ok = await channel.queue_purge(name)
            count += ok.message_count or 0
    return count


async def purge(context: AmqpContext, names: QueueNames) -> int:
    """Delete the ready and delayed messages of a queue; return how many."""
    return await _purge(context, [names.work, names.isolated, *names.delays])


async def purge_dead(context: AmqpContext, names: QueueNames) -> int:
    """Delete the dead letters of a queue; return how many."""
    return await _purge(context, [names.dead])


async def dead_letters(context: AmqpContext, names: QueueNames, limit: int) -> list[DeadLetter]:
    """The oldest ``limit`` dead letters, left in place."""
    letters: list[DeadLetter] = []
    async with context.raw_channel() as channel:
        last: int | None = None
        for _ in range(max(0, limit)):
            try:
                message = await channel.basic_get(names.dead, no_ack=False)
            except ChannelNotFoundEntity:
                return []
            if not isinstance(message.delivery, spec.Basic.GetOk):
                break
            last = message.delivery.delivery_tag
            letters.append(_letter(names, message))
        await _hand_back(channel, names, last)
    return letters


async def requeue_dead(context: AmqpContext, names: QueueNames, ids: Sequence[str] | None) -> int:
    """Move dead letters (those with ``ids``, or all) back to the work queue."""
    wanted = None if ids is None else set(ids)
    started = time.time()
    moved = 0
    async with context.raw_channel() as channel:
        last: int | None = None  # the newest delivery left unacked
        while wanted is None or moved < len(wanted):
            try:
                message = await channel.basic_get(names.dead, no_ack=False)
            except ChannelNotFoundEntity:
                return 0
            delivery = message.delivery
            if not isinstance(delivery, spec.Basic.GetOk) or delivery.delivery_tag is None:
                break
            letter = _letter(names, message)
            if (wanted is not None and letter.id not in wanted) or letter.dead_at > started:
                # Not asked for, or failed again while this runs (it waits for the
                # next requeue): stays unacked, handed back below.
                last = delivery.delivery_tag
                continue
            properties = message.header.properties
            headers = {k: v for k, v in (properties.headers or {}).items() if k not in _DEAD_ONLY}
            await context.publish_raw(
                "",
                names.work,
                message.body,
                headers=headers or None,
                priority=properties.priority or 0,
                what=f"requeue a dead letter of {names.name}",
            )
            await channel.basic_ack(delivery.delivery_tag)
            moved += 1
        await _hand_back(channel, names, last)
    return moved


async def _hand_back(
    channel: aiormq.abc.AbstractChannel, names: QueueNames, last: int | None
) -> None:
    """Return every dead letter this channel still holds, and wait until they are back.

    A nack with requeue reaches the queue before a later request from the same
    channel, so once the passive declaration answers, the letters are in place
    for whoever reads the queue next (closing the channel would return them too,
    but some time after it answered).
    """
    if last is None:
        return
    await channel.basic_nack(last, multiple=True, requeue=True)
    await channel.queue_declare(names.dead, passive=True)


async def purge_declared(context: AmqpContext) -> int:
    """Empty every queue this process declared (work, delay and dead-letter queues)."""
    count = 0
    for name in sorted(context.declarer.declared):
        names = context.names.queue(name)
        count += await _purge(context, [names.work, names.isolated, *names.delays, names.dead])
    return count


async def delete_declared(context: AmqpContext) -> int:
    """Delete the queues this process declared, and the prefix's exchanges."""
    names = context.names
    queues = [names.queue(q) for q in sorted(context.declarer.declared)]
    deleted = 0
    async with context.raw_channel() as channel:
        for queue in queues:
            for name in (queue.work, queue.isolated, queue.dead, *queue.delays):
                await channel.queue_delete(name)
                deleted += 1
        for level in range(-1, LEVELS):
            await channel.exchange_delete(names.delay_exchange(level))
        for exchange in (names.dead_exchange, names.control_exchange, names.events_exchange):
            await channel.exchange_delete(exchange)
    context.declarer.forget()
    context.declarer.declared.clear()
    return deleted


def _letter(names: QueueNames, message: DeliveredMessage) -> DeadLetter:
    properties = message.header.properties
    headers: dict[str, Any] = dict(properties.headers or {})
    reason = _text(headers.get(REASON))
    dead_at = headers.get(DEAD_AT)
    when = dead_at / 1000 if isinstance(dead_at, int) else 0.0
    if not reason:  # dead-lettered by RabbitMQ itself
        deaths = headers.get("x-death")
        death = deaths[0] if isinstance(deaths, list) and deaths else {}
        cause = _text(death.get("reason") if isinstance(death, dict) else None)
        reason = _SERVER_REASONS.get(cause, f"dead-lettered by RabbitMQ: {cause or 'unknown'}")
        stamp = death.get("time") if isinstance(death, dict) else None
        if isinstance(stamp, datetime):
            when = stamp.timestamp()
    return DeadLetter(
        queue=names.name,
        body=message.body,
        reason=reason,
        dead_at=when,
        id=properties.message_id or "",
    )


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else ""

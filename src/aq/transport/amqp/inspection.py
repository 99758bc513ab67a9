"""Looking into RabbitMQ queues and repairing them: counts, dead letters, purges.

Everything here runs on short-lived plain channels, because RabbitMQ answers a
passive declaration of a missing queue by closing the channel; a missing
queue simply counts as empty. Counts come from ``queue.declare-ok``, which
reports ready messages and consumers but not unacknowledged ones (the
transport adds those its own consumers hold). Dead letters are browsed with
``basic.get`` and handed back by closing the channel, which returns them to
their places in the queue.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiormq import spec
from aiormq.abc import DeliveredMessage
from aiormq.exceptions import ChannelNotFoundEntity

from aq.transport.amqp.topology import LEVELS, QueueNames
from aq.transport.base import DeadLetter

if TYPE_CHECKING:
    from aq.transport.amqp.transport import AmqpTransport

__all__ = [
    "DEAD_AT",
    "DEAD_QUEUE",
    "REASON",
    "Counts",
    "dead_letters",
    "delete_declared",
    "purge_declared",
    "purge",
    "purge_dead",
    "requeue_dead",
    "stats",
]

#: Headers aq adds to a dead letter: why, when (UNIX ms), and from which queue.
REASON = "x-aq-reason"
DEAD_AT = "x-aq-dead-at"
DEAD_QUEUE = "x-aq-queue"
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


async def _declare_ok(
    transport: AmqpTransport, queues: Sequence[str], stop_at_missing: bool = False
) -> list[spec.Queue.DeclareOk | None]:
    """Passive declarations of ``queues``, in order; ``None`` for a missing one."""
    results: list[spec.Queue.DeclareOk | None] = []
    pending = list(queues)
    while pending:
        async with transport.raw_channel() as channel:
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


async def stats(transport: AmqpTransport, names: QueueNames) -> Counts:
    """Ready, delayed and dead counts, and consumers, of one queue.

    Read in the order messages flow (the longest delay level first, the work
    queue last), so a message moving on while it is counted is counted twice
    at worst, never missed.
    """
    delays = await _declare_ok(transport, names.delays[::-1], stop_at_missing=True)
    work, dead = await _declare_ok(transport, [names.work, names.dead])
    return Counts(
        ready=work.message_count or 0 if work else 0,
        delayed=sum(ok.message_count or 0 for ok in delays if ok),
        dead=dead.message_count or 0 if dead else 0,
        consumers=work.consumer_count or 0 if work else 0,
    )


async def _purge(transport: AmqpTransport, queues: Sequence[str]) -> int:
    existing = [
        name
        for name, ok in zip(queues, await _declare_ok(transport, queues), strict=True)
        if ok is not None
    ]
    count = 0
    async with transport.raw_channel() as channel:
        for name in existing:
            ok = await channel.queue_purge(name)
            count += ok.message_count or 0
    return count


async def purge(transport: AmqpTransport, names: QueueNames) -> int:
    """Delete the ready and delayed messages of a queue; return how many."""
    return await _purge(transport, [names.work, *names.delays])


async def purge_dead(transport: AmqpTransport, names: QueueNames) -> int:
    """Delete the dead letters of a queue; return how many."""
    return await _purge(transport, [names.dead])


async def dead_letters(transport: AmqpTransport, names: QueueNames, limit: int) -> list[DeadLetter]:
    """The oldest ``limit`` dead letters, left in place."""
    letters: list[DeadLetter] = []
    async with transport.raw_channel() as channel:
        for _ in range(max(0, limit)):
            try:
                message = await channel.basic_get(names.dead, no_ack=False)
            except ChannelNotFoundEntity:
                break
            if isinstance(message.delivery, spec.Basic.GetEmpty):
                break
            letters.append(_letter(names, message))
        # Closing the channel hands every one of them back, in order.
    return letters


async def requeue_dead(
    transport: AmqpTransport, names: QueueNames, ids: Sequence[str] | None
) -> int:
    """Move dead letters (those with ``ids``, or all) back to the work queue."""
    [dead] = await _declare_ok(transport, [names.dead])
    if dead is None:
        return 0
    wanted = None if ids is None else set(ids)
    moved = 0
    async with transport.raw_channel() as channel:
        # At most as many as there were: letters that fail again and come back
        # while this runs wait for the next requeue.
        for _ in range(dead.message_count or 0):
            message = await channel.basic_get(names.dead, no_ack=False)
            if isinstance(message.delivery, spec.Basic.GetEmpty):
                break
            properties = message.header.properties
            if wanted is not None and (properties.message_id or "") not in wanted:
                continue  # stays unacked: returned when the channel closes
            headers = {k: v for k, v in (properties.headers or {}).items() if k not in _DEAD_ONLY}
            await transport.publish_raw(
                "",
                names.work,
                message.body,
                headers=headers or None,
                priority=properties.priority or 0,
                what=f"requeue a dead letter of {names.name}",
            )
            delivery = message.delivery
            if isinstance(delivery, spec.Basic.GetOk) and delivery.delivery_tag is not None:
                await channel.basic_ack(delivery.delivery_tag)
            moved += 1
            if wanted is not None and moved == len(wanted):
                break
    return moved


async def purge_declared(transport: AmqpTransport) -> int:
    """Empty every queue this process declared (work, delay and dead-letter queues)."""
    count = 0
    for name in sorted(transport.declarer.declared):
        names = transport.names.queue(name)
        count += await _purge(transport, [names.work, *names.delays, names.dead])
    return count


async def delete_declared(transport: AmqpTransport) -> int:
    """Delete the queues this process declared, and the prefix's exchanges."""
    names = transport.names
    queues = [names.queue(q) for q in sorted(transport.declarer.declared)]
    deleted = 0
    async with transport.raw_channel() as channel:
        for queue in queues:
            for name in (queue.work, queue.dead, *queue.delays):
                await channel.queue_delete(name)
                deleted += 1
        for level in range(-1, LEVELS):
            await channel.exchange_delete(names.delay_exchange(level))
        for exchange in (names.dead_exchange, names.control_exchange):
            await channel.exchange_delete(exchange)
    transport.declarer.forget()
    transport.declarer.declared.clear()
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

"""Administering RabbitMQ queues: counts by state, dead letters, purging.

The work is done by :mod:`aq.transport.amqp.inspection` on plain channels;
this adds the deliveries this process's own consumers hold, which RabbitMQ
does not report per queue.
"""

from __future__ import annotations

from collections.abc import Sequence

from aq.transport.admin import Admin, DeadLetter, QueueStats
from aq.transport.amqp import inspection
from aq.transport.amqp.context import AmqpContext

__all__ = ["AmqpAdmin"]


class AmqpAdmin(Admin):
    """Queue administration on RabbitMQ."""

    def __init__(self, context: AmqpContext) -> None:
        self._context = context

    async def stats(self, queue: str) -> QueueStats:
        context = self._context
        counts = await inspection.stats(context, context.names.queue(queue))
        held = sum(c.held(queue) for c in context.consumers if not c.isolated)
        held_isolated = sum(c.held(queue) for c in context.consumers if c.isolated)
        return QueueStats(
            queue,
            counts.ready,
            counts.delayed,
            held,
            counts.dead,
            counts.consumers,
            counts.isolated + held_isolated,
        )

    async def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        context = self._context
        return await inspection.dead_letters(context, context.names.queue(queue), limit)

    async def purge(self, queue: str) -> int:
        return await inspection.purge(self._context, self._context.names.queue(queue))

    async def requeue_dead(self, queue: str, ids: Sequence[str] | None = None) -> int:
        names = await self._context.declarer.queue(queue)
        return await inspection.requeue_dead(self._context, names, ids)

    async def purge_dead(self, queue: str) -> int:
        return await inspection.purge_dead(self._context, self._context.names.queue(queue))

    async def purge_namespace(self) -> int:
        """Empty every queue this process declared (tests); return how many messages."""
        return await inspection.purge_declared(self._context)

    async def delete_namespace(self) -> int:
        """Delete every queue and exchange this process declared (tests, benchmarks)."""
        return await inspection.delete_declared(self._context)

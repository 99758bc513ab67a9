"""Inspecting and repairing queues: what ``aq queues``, ``aq purge`` and ``aq dlq`` do.

Each function connects with the broker's transport, does one job and returns
plain data, so the CLI stays a thin layer of printing and prompting.
"""

from __future__ import annotations

from collections.abc import Sequence

from aq.broker import Broker
from aq.errors import MessageDecodeError
from aq.serializer import Serializer
from aq.transport.admin import DeadLetter, QueueStats

__all__ = ["dead_letters", "purge", "purge_dead", "queue_stats", "requeue_dead", "task_name"]


async def queue_stats(broker: Broker, queues: Sequence[str]) -> list[QueueStats]:
    """Counts for each of ``queues``."""
    async with broker:
        return [await broker.admin.stats(q) for q in queues]


async def purge(broker: Broker, queue: str) -> int:
    """Delete the ready and delayed messages of ``queue``; return how many."""
    async with broker:
        return await broker.admin.purge(queue)


async def dead_letters(broker: Broker, queue: str, limit: int) -> list[DeadLetter]:
    """The oldest ``limit`` dead letters of ``queue``."""
    async with broker:
        return await broker.admin.dead_letters(queue, limit)


async def requeue_dead(broker: Broker, queue: str, ids: Sequence[str] | None) -> int:
    """Send dead letters (``ids``, or all) back to ``queue``; return how many."""
    async with broker:
        return await broker.admin.requeue_dead(queue, ids)


async def purge_dead(broker: Broker, queue: str) -> int:
    """Delete every dead letter of ``queue``; return how many."""
    async with broker:
        return await broker.admin.purge_dead(queue)


def task_name(body: bytes, serializer: Serializer) -> str:
    """The task a message body names, decoded with the broker's ``serializer``, or a
    note saying why it cannot be read (naming the content type it is not)."""
    try:
        value = serializer.loads(body)
    except MessageDecodeError:
        return f"(not {serializer.content_type})"
    if isinstance(value, dict) and isinstance(value.get("task"), str):
        return str(value["task"])
    return "(no task name)"

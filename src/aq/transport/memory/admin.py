"""Administering the queues of a ``memory://`` broker."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from aq.transport.admin import Admin, DeadLetter, QueueStats
from aq.transport.memory.hub import Entry, Hub

__all__ = ["MemoryAdmin"]


class MemoryAdmin(Admin):
    """Queue administration of one hub (``hub`` is read when asked, since the
    transport attaches to its hub only when it connects)."""

    def __init__(self, hub: Callable[[], Hub]) -> None:
        self._hub = hub

    async def stats(self, queue: str) -> QueueStats:
        hub = self._hub()
        q = hub.queue(queue)
        isolation = hub.isolation.get(queue)
        isolated = len(isolation.ready) + isolation.unacked if isolation is not None else 0
        return QueueStats(
            queue, len(q.ready), len(q.delayed), q.unacked, len(q.dead), q.consumers, isolated
        )

    async def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        return self._hub().queue(queue).dead[:limit]

    async def purge(self, queue: str) -> int:
        hub = self._hub()
        count = 0
        for q in (hub.queue(queue), hub.isolation.get(queue)):
            if q is not None:
                count += len(q.ready) + len(q.delayed)
                q.ready.clear()
                q.delayed.clear()
        return count

    async def requeue_dead(self, queue: str, ids: Sequence[str] | None = None) -> int:
        q = self._hub().queue(queue)
        wanted = None if ids is None else set(ids)
        chosen = [d for d in q.dead if wanted is None or d.id in wanted]
        q.dead = [d for d in q.dead if d not in chosen]
        for letter in chosen:
            q.push(Entry(letter.body, 0))
        return len(chosen)

    async def purge_dead(self, queue: str) -> int:
        q = self._hub().queue(queue)
        count = len(q.dead)
        q.dead.clear()
        return count

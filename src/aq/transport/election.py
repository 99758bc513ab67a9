"""``Election``: one leader among the processes that campaign under one name.

The scheduler runs in any number of processes and fires only in the one that
leads. A transport whose server can elect a leader by itself offers an
election (:meth:`aq.transport.Transport.election`: RabbitMQ's single-active-
consumer queues); otherwise the runtime elects with a lease in the store
(:class:`aq.scheduling.leadership.LeaseElection`). Either way a leader learns
that it lost its place (its connection died, its lease lapsed) and stops
acting as one before another process can take over.
"""

from __future__ import annotations

import abc

from aq.transport.store import Lease

__all__ = ["Election"]


class Election(abc.ABC):
    """Leadership of one name, as seen from one process."""

    @property
    @abc.abstractmethod
    def leading(self) -> bool:
        """Whether this process leads now."""

    @property
    def lease(self) -> Lease | None:
        """The store lease held while leading, for fenced writes (None when the
        server elects without one)."""
        return None

    @abc.abstractmethod
    async def campaign(self) -> None:
        """Return once this process leads (at once if it does)."""

    @abc.abstractmethod
    async def wait_lost(self) -> None:
        """Return once this process no longer leads (at once if it does not)."""

    @abc.abstractmethod
    async def resign(self) -> None:
        """Stop leading and campaigning, so another process can lead at once."""

"""The ``Admin`` interface: what an operator asks of a broker's queues.

Counting messages by state, reading and re-driving dead letters, and emptying
a queue are separate from moving messages (:class:`~aq.transport.base.Transport`):
a CLI or a dashboard needs them, a worker or a producer never does, and a
backend may answer them through another channel (RabbitMQ's passive
declarations) than the one it consumes on. A transport hands out its admin
(:attr:`Transport.admin`), which shares its connection.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Admin", "DeadLetter", "QueueStats"]


@dataclass(frozen=True, slots=True)
class QueueStats:
    """How many messages a queue holds, by state.

    ``isolated`` counts the messages waiting in the queue's isolation queue: those
    whose workers died while they ran, waiting to run alone (see
    :meth:`Delivery.isolate`).
    """

    queue: str
    ready: int
    delayed: int
    unacked: int
    dead: int
    consumers: int
    isolated: int = 0


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that could not be processed, with the reason and when."""

    queue: str
    body: bytes
    reason: str
    dead_at: float
    #: The transport's id of this dead letter, for requeue_dead(ids=...).
    id: str = ""


class Admin(abc.ABC):
    """Queue administration over a connected transport; see the module docstring."""

    @abc.abstractmethod
    async def stats(self, queue: str) -> QueueStats:
        """Counts of messages in ``queue`` by state."""

    @abc.abstractmethod
    async def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        """The oldest ``limit`` dead letters of ``queue``."""

    @abc.abstractmethod
    async def purge(self, queue: str) -> int:
        """Delete every ready and delayed message of ``queue``; return how many."""

    @abc.abstractmethod
    async def requeue_dead(self, queue: str, ids: Sequence[str] | None = None) -> int:
        """Put dead letters of ``queue`` (those with ``ids``, or all) back in the queue."""

    @abc.abstractmethod
    async def purge_dead(self, queue: str) -> int:
        """Delete every dead letter of ``queue``; return how many."""

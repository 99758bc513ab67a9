"""Every Redis key aq uses, in one place.

Keys of one queue share the hash tag ``{queue}`` so that the Lua scripts that
touch several of them run on one Redis Cluster node; a producer's reply keys
share the tag of its inbox id. ``prefix`` namespaces several apps (or test
runs) on one Redis database.
"""

from __future__ import annotations

from dataclasses import dataclass

from aq.message import MAX_PRIORITY

__all__ = ["GROUP", "Keys", "QueueKeys"]

#: The consumer group every worker of every queue joins.
GROUP = "aq-workers"


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """The keys of one queue."""

    name: str
    #: One stream per priority level, index = priority (0..9).
    streams: tuple[str, ...]
    #: Sorted set of delayed messages, scored by due time.
    delayed: str
    #: Stream of dead letters.
    dead: str
    #: Stream of messages whose workers died while they ran, to be run alone.
    isolated: str = ""
    #: Whether this is the view of the isolation stream (see :meth:`isolation`).
    is_isolation: bool = False

    @property
    def by_priority(self) -> tuple[str, ...]:
        """The streams from the highest priority to the lowest, the order they are read."""
        return self.streams[::-1]

    def isolation(self) -> QueueKeys:
        """The keys an isolation worker consumes: the isolation stream as the only
        stream, dead letters into this queue's dead-letter stream."""
        return QueueKeys(
            self.name, (self.isolated,), self.delayed, self.dead, self.isolated, is_isolation=True
        )


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names under one prefix."""

    prefix: str = "aq"

    def queue(self, name: str) -> QueueKeys:
        base = f"{self.prefix}:{{{name}}}"
        return QueueKeys(
            name=name,
            streams=tuple(f"{base}:p{level}" for level in range(MAX_PRIORITY + 1)),
            delayed=f"{base}:delayed",
            dead=f"{base}:dead",
            isolated=f"{base}:isolated",
        )

    def inbox(self, inbox_id: str) -> tuple[str, str]:
        """(stream of replies, liveness key) of a producer's inbox."""
        base = f"{self.prefix}:reply:{{{inbox_id}}}"
        return base, f"{base}:alive"

    def result(self, task_id: str) -> str:
        """Where a task's final reply is kept when the broker has a ``result_ttl``."""
        return f"{self.prefix}:result:{{{task_id}}}"

    @property
    def control(self) -> str:
        """The stream of control messages (cancellations) every worker reads."""
        return f"{self.prefix}:control"

    @property
    def events(self) -> str:
        """The stream of monitoring event batches, capped by length."""
        return f"{self.prefix}:events"

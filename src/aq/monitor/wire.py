"""The event format: what workers and producers emit for monitoring.

Events travel in batches: one broker message (a Redis stream entry, a
RabbitMQ message) holds ``{"v": 1, "events": [...]}``, each event a flat JSON
object with at least ``type`` (one of :data:`EVENT_TYPES`) and ``ts`` (UNIX
seconds). Task events carry ``task_id``, ``name``, ``queue`` and ``attempt``;
events from a worker carry ``worker`` and ``host``. docs/protocol.md lists
every field. Decoding keeps what it understands and skips an event that is
not an object with a known type and a number for ``ts``: a watcher never
stops on a bad event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from aq.errors import MessageDecodeError
from aq.serializer import Serializer

__all__ = [
    "EVENTS_VERSION",
    "EVENT_TYPES",
    "TASK_EVENTS",
    "WORKER_EVENTS",
    "Event",
    "decode_events",
    "encode_events",
]

EVENTS_VERSION: Final = 1

#: Task events, in the order of a task's life.
TASK_EVENTS: Final = (
    "task-sent",
    "task-received",
    "task-started",
    "task-succeeded",
    "task-failed",
    "task-retried",
    "task-dead-lettered",
    "task-cancelled",
    "task-expired",
)
#: A worker's own events: it came, it lives (every ``heartbeat`` seconds), it went.
WORKER_EVENTS: Final = ("worker-online", "worker-heartbeat", "worker-offline")
EVENT_TYPES: Final = frozenset(TASK_EVENTS + WORKER_EVENTS)


@dataclass(frozen=True, slots=True)
class Event:
    """One event as a watcher sees it.

    Attributes:
        type: ``task-succeeded``, ``worker-heartbeat``... (:data:`EVENT_TYPES`).
        ts: when it happened (UNIX seconds).
        fields: every field of the event, ``type`` and ``ts`` included.
    """

    type: str
    ts: float
    fields: Mapping[str, Any] = field(default_factory=dict)

    def get(self, name: str, default: Any = None) -> Any:
        """The field ``name``, or ``default``."""
        return self.fields.get(name, default)

    @property
    def task_id(self) -> str | None:
        value = self.fields.get("task_id")
        return value if isinstance(value, str) else None

    @property
    def name(self) -> str | None:
        value = self.fields.get("name")
        return value if isinstance(value, str) else None

    @property
    def worker(self) -> str | None:
        value = self.fields.get("worker")
        return value if isinstance(value, str) else None


def encode_events(events: list[dict[str, Any]], serializer: Serializer) -> bytes:
    """One batch of events, as the broker carries it."""
    return serializer.dumps({"v": EVENTS_VERSION, "events": events})


def decode_events(data: bytes, serializer: Serializer) -> list[Event]:
    """The events of one batch, skipping any that is malformed.

    Raises:
        aq.MessageDecodeError: the batch itself is not a version-1 event batch.
    """
    obj = serializer.loads(data)  # its MessageDecodeError says why
    if not isinstance(obj, dict) or obj.get("v") != EVENTS_VERSION:
        raise MessageDecodeError(f"not a v{EVENTS_VERSION} event batch")
    items = obj.get("events")
    if not isinstance(items, list):
        raise MessageDecodeError("an event batch needs a list of events")
    events = []
    for item in items:
        if not isinstance(item, dict):
            continue
        kind, ts = item.get("type"), item.get("ts")
        if kind in EVENT_TYPES and isinstance(ts, int | float) and not isinstance(ts, bool):
            events.append(Event(kind, float(ts), item))
    return events

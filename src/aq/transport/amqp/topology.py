"""Every RabbitMQ queue, exchange and binding aq uses, in one place.

For a queue ``Q`` under prefix ``P`` (default ``aq``):

* ``P.Q``: the work queue, durable, ``x-max-priority`` 9 when classic; messages
  the server itself dead-letters (a quorum queue's delivery limit) go to the
  exchange ``P.dead`` with the routing key ``P.Q``.
* ``P.Q.dead``: its dead-letter queue, bound to the direct exchange ``P.dead``.
* ``P.Q.isolated``: its isolation queue, declared like the work queue (and
  dead-lettering into ``P.Q.dead`` too): messages whose workers died while
  they ran wait here for an isolation worker to run them alone.
* ``P.Q.delay.00`` .. ``P.Q.delay.31``: the delay levels (below).

and for the whole prefix: ``P.control`` (a fanout exchange for control
messages), ``P.events`` (a topic exchange for monitoring events) with one
``P.events.<id>`` queue per watcher, ``P.reply.<id>`` (one reply queue per producer),
``P.election.<name>`` (a leader election, see election.py) and the delay
exchanges ``P.delay.00`` .. ``P.delay.31`` and ``P.delay.out``.

**Delays without plugins.** A delay of ``D`` milliseconds (below 2**32) is
written in binary. Level ``L`` is a queue whose every message lives exactly
``2**L`` ms (``x-message-ttl``) and is then dead-lettered to the next level's
exchange. A delayed message is published with the routing key
``b31.b30...b0.P.Q`` (its delay's bits, then the work queue) to the exchange of
its highest set bit; each level exchange (topic) sends a message whose bit is 1
into that level's queue and one whose bit is 0 straight on to the level below,
and ``P.delay.out`` routes by the trailing name to the work queue. So a message
waits ``D`` ms in all, passing through one queue per set bit, and since every
message of a level queue has the same lifetime, each queue stays in expiry
order. Longer delays are cut to the longest and re-delayed on arrival.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from aq.errors import ConfigurationError
from aq.message import MAX_PRIORITY

__all__ = ["LEVELS", "MAX_DELAY_MS", "Names", "QueueNames", "delay_route"]

#: Delay levels: level L holds messages for 2**L ms.
LEVELS = 32
MAX_DELAY_MS = 2**LEVELS - 1
_MAX_NAME = 255 - 2 * LEVELS  # the routing key of a delayed message must fit in 255 bytes
_RESERVED = re.compile(r"(\.dead|\.isolated|\.delay\.\d\d)$|^(reply|control|election|events)\.")


@dataclass(frozen=True, slots=True)
class QueueNames:
    """The names of one queue's objects, and the arguments they are declared with."""

    name: str
    work: str
    dead: str
    delays: tuple[str, ...]
    isolated: str = ""


@dataclass(frozen=True, slots=True)
class Names:
    """Names under one prefix."""

    prefix: str = "aq"

    def queue(self, name: str) -> QueueNames:
        """The objects of queue ``name``.

        Raises:
            aq.ConfigurationError: the name cannot be used on RabbitMQ.
        """
        check_queue_name(name)
        work = f"{self.prefix}.{name}"
        if len(work.encode()) > _MAX_NAME:
            raise ConfigurationError(
                f"queue name {name!r} is too long for RabbitMQ: at most "
                f"{_MAX_NAME - len(self.prefix) - 1} bytes"
            )
        return QueueNames(
            name=name,
            work=work,
            dead=f"{work}.dead",
            delays=tuple(f"{work}.delay.{level:02d}" for level in range(LEVELS)),
            isolated=f"{work}.isolated",
        )

    @property
    def dead_exchange(self) -> str:
        return f"{self.prefix}.dead"

    @property
    def control_exchange(self) -> str:
        return f"{self.prefix}.control"

    def control_queue(self, consumer_id: str) -> str:
        return f"{self.prefix}.control.{consumer_id}"

    @property
    def events_exchange(self) -> str:
        return f"{self.prefix}.events"

    def events_queue(self, subscriber_id: str) -> str:
        return f"{self.prefix}.events.{subscriber_id}"

    def election_queue(self, name: str) -> str:
        return f"{self.prefix}.election.{name}"

    def reply_queue(self, inbox_id: str) -> str:
        return f"{self.prefix}.reply.{inbox_id}"

    def delay_exchange(self, level: int) -> str:
        """The exchange of delay level ``level``; -1 is the last hop, to the work queue."""
        return f"{self.prefix}.delay.out" if level < 0 else f"{self.prefix}.delay.{level:02d}"


def check_queue_name(name: str) -> None:
    """Refuse names that would clash with aq's own objects or act as topic wildcards."""
    if not name or any(c in name for c in "*#") or _RESERVED.search(name):
        raise ConfigurationError(
            f"queue name {name!r} cannot be used with RabbitMQ: it must be non-empty, "
            "contain no '*' or '#', not end in '.dead', '.isolated' or '.delay.NN', and "
            "not start with 'reply.', 'control.', 'election.' or 'events.'"
        )


def delay_route(names: Names, work: str, delay_ms: int) -> tuple[str, str]:
    """(exchange, routing key) that delivers a message to ``work`` after ``delay_ms``."""
    delay = min(max(delay_ms, 1), MAX_DELAY_MS)
    bits = ".".join("1" if delay >> level & 1 else "0" for level in reversed(range(LEVELS)))
    return names.delay_exchange(delay.bit_length() - 1), f"{bits}.{work}"


def level_pattern(level: int, bit: str, tail: str) -> str:
    """The topic pattern matching routing keys whose bit ``level`` is ``bit``."""
    return "*." * (LEVELS - 1 - level) + bit + "." + "*." * level + tail


def out_pattern(work: str) -> str:
    """The pattern of ``P.delay.out`` that routes to ``work``."""
    return "*." * LEVELS + work


def down_pattern(level: int) -> str:
    """The pattern for passing a message whose bit ``level`` is 0 to the level below."""
    return "*." * (LEVELS - 1 - level) + "0.#"


def work_arguments(
    names: Names, queue: QueueNames, queue_type: str, max_deliveries: int
) -> dict[str, Any]:
    """``queue.declare`` arguments of a work queue."""
    arguments: dict[str, Any] = {
        "x-dead-letter-exchange": names.dead_exchange,
        "x-dead-letter-routing-key": queue.work,
    }
    if queue_type == "quorum":
        arguments |= {
            "x-queue-type": "quorum",
            "x-delivery-limit": max_deliveries,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }
    else:
        arguments["x-max-priority"] = MAX_PRIORITY
    return arguments


def dead_arguments(queue_type: str) -> dict[str, Any]:
    """``queue.declare`` arguments of a dead-letter queue."""
    return {"x-queue-type": "quorum"} if queue_type == "quorum" else {}


def delay_arguments(names: Names, level: int, queue_type: str) -> dict[str, Any]:
    """``queue.declare`` arguments of delay level ``level``."""
    arguments: dict[str, Any] = {
        "x-message-ttl": 2**level,
        "x-dead-letter-exchange": names.delay_exchange(level - 1),
    }
    if queue_type == "quorum":
        arguments |= {
            "x-queue-type": "quorum",
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }
    return arguments

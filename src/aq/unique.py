"""Unique tasks: one queued or running task per key, and every caller gets its result.

A task with ``unique_for`` (or a call with ``.options(unique_key=...)``) takes
the key ``unique:<key>`` in the store with set-if-absent before it is sent,
holding its task id for ``unique_for`` seconds. A ``kiq()`` that finds the key
taken sends nothing: it *joins* the task holding it, by adding its reply
address to the set ``waiters:<id>`` and returning a handle with that id.

When the task ends (a result, a failure, a cancellation, a dead letter), the
worker keeps the outcome at ``result:<id>`` for a while, sends it to every
joined address, and only then frees the key, if it still holds this task's id.
A caller that joins after the worker read the waiters finds the outcome kept
in the store, so no handle is left waiting: each joiner adds itself first and
reads the store second, the worker writes the store first and reads the
waiters second. A worker that dies holding the key leaves it to expire after
``unique_for``.

The default key is the task's name and a hash of its arguments, so
``report.kiq(42)`` twice is one task while ``report.kiq(43)`` is another.
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import TYPE_CHECKING, Any

from aq.errors import BrokerError
from aq.message import (
    Reply,
    TaskMessage,
    decode_reply,
    encode_reply,
    error_payload,
    result_key,
)

if TYPE_CHECKING:
    from aq.broker import Broker
    from aq.replies import ResultWaiter
    from aq.task import AnyTask

__all__ = ["UNIQUE_HEADER", "default_key", "finish_unique", "send_unique"]

#: Header of a unique task's message: the key it holds.
UNIQUE_HEADER = "aq-unique"
#: Seconds a unique task's outcome is kept for callers that join as it ends.
JOIN_TTL = 60.0
#: How many times ``kiq()`` tries again when the key frees as it looks.
_ATTEMPTS = 5


def default_key(
    broker: Broker, task_name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> str:
    """The key of a call with no ``unique_key``: its task and a hash of its
    arguments, encoded by the broker's codec (keyword arguments in name order).

    Raises:
        aq.SerializationError: an argument cannot be encoded.
    """
    encoded = broker.serializer.dumps([list(args), dict(sorted(kwargs.items()))])
    return f"{task_name}:{hashlib.sha256(encoded).hexdigest()[:32]}"


async def send_unique(
    broker: Broker, task: AnyTask, message: TaskMessage, key: str, ttl: float
) -> tuple[str, ResultWaiter]:
    """Send ``message`` holding ``key``, or join the task that holds it; the id and
    waiter of the task the caller's handle follows."""
    store = broker.require_store("unique tasks")
    held = f"unique:{key}"
    for _ in range(_ATTEMPTS):
        if await store.set_if_absent(held, message.id.encode(), ttl=ttl):
            message.headers[UNIQUE_HEADER] = key
            try:
                return message.id, await broker.publish(message, task)
            except Exception as exc:
                # Not sent: callers that joined meanwhile get the error, the key frees.
                # (A kiq() cancelled mid-send keeps the key: the message may be out.)
                reply = Reply(message.id, message.id, "error", error_payload(exc, False))
                broker.register_waiter(message.id).feed(reply)  # callers in this process
                with contextlib.suppress(BrokerError):
                    body = encode_reply(reply, broker.codec)
                    await finish_unique(broker, message, body)  # and in others
                raise
        holder = await store.get(held)
        if holder is not None:
            return holder.decode(), await _join(broker, holder.decode(), ttl)
    raise BrokerError(f"unique key {key!r} was taken and freed {_ATTEMPTS} times as kiq() looked")


async def _join(broker: Broker, task_id: str, ttl: float) -> ResultWaiter:
    """Follow task ``task_id``, sent by another call: ask for its outcome too."""
    store = broker.require_store("unique tasks")
    waiter = broker.register_waiter(task_id)
    address = broker.listening_address or await broker.reply_address()
    await store.add_member(f"waiters:{task_id}", address, ttl=ttl)
    kept = await store.get(result_key(task_id))
    if kept is not None:  # it ended before the worker could see this caller
        waiter.feed(decode_reply(kept, broker.codec))
    return waiter


async def finish_unique(broker: Broker, message: TaskMessage, body: bytes) -> None:
    """At the end of a unique task: keep its outcome ``body`` (an encoded final
    reply), send it to every caller that joined, then free the key."""
    key = message.headers.get(UNIQUE_HEADER)
    if not isinstance(key, str):
        return
    store = broker.require_store("unique tasks")
    ttl = max(JOIN_TTL, broker.result_ttl or 0.0)
    await store.set(result_key(message.id), body, ttl=ttl)
    for address in await store.members(f"waiters:{message.id}"):
        if address != message.reply_to:
            await broker.transport.send_reply(address, body)
    await store.delete_if(f"unique:{key}", message.id.encode())

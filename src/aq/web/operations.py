"""What the dashboard asks of the broker on demand, and the actions it takes.

Reads: one task's kept state, result and traceback (for tasks older than the
board remembers, by id through the store), and the dead letters of a queue,
decoded for reading. Actions: shut a worker down, change a task's rate
limit, cancel a task, retry a dead-lettered task, purge a queue, requeue or
purge dead letters, pause or resume a schedule. Each action returns a short
sentence saying what it did; bad input raises :class:`ActionError` with one
saying what is wrong. The HTTP layer (:mod:`aq.web.app`) only maps requests
onto these functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aq.broker import Broker
from aq.errors import AQError, ConfigurationError, MessageDecodeError
from aq.message import decode_reply, result_key, task_message
from aq.web.history import MAX_TEXT, clip

__all__ = ["ActionError", "dead_letters", "stored_task"]

#: Dead letters read per queue for the dead-letter page (and scanned by retry).
DEAD_PAGE = 500


class ActionError(AQError):
    """An action that cannot be done as asked; the message says why."""


async def stored_task(broker: Broker, task_id: str) -> dict[str, Any]:
    """What the store keeps of ``task_id``: its state (with task states kept) and
    its outcome (value, or error with traceback). Empty without a store."""
    found: dict[str, Any] = {}
    store = broker.store
    if store is None:
        return found
    if broker.tracks_states:
        found["status"] = (await broker.status(task_id)).to_dict()
    body = await store.get(result_key(task_id))
    if body is not None:
        try:
            reply = decode_reply(body, broker.codec)
        except MessageDecodeError:
            return found
        if reply.kind == "error" and isinstance(reply.payload, dict):
            payload = reply.payload
            found["outcome"] = {
                "kind": "error",
                "type": str(payload.get("type", ""))[:200],
                "message": str(payload.get("message", ""))[:MAX_TEXT],
                "traceback": str(payload.get("traceback", ""))[:20_000],
            }
        else:
            found["outcome"] = {"kind": reply.kind, "value": clip(reply.payload)}
    return found


async def dead_letters(broker: Broker, queue: str, limit: int = DEAD_PAGE) -> list[dict[str, Any]]:
    """The oldest ``limit`` dead letters of ``queue``, decoded for reading."""
    letters = await broker.admin.dead_letters(queue, limit)
    shown = []
    for letter in letters:
        entry: dict[str, Any] = {
            "id": letter.id,
            "queue": letter.queue,
            "reason": letter.reason[:MAX_TEXT],
            "dead_at": letter.dead_at,
            "size": len(letter.body),
        }
        try:  # shown, not acted on: the reason says whether it was trusted
            message = task_message(broker.codec.open(letter.body, verify=False).value)
        except MessageDecodeError as exc:
            entry.update(task_id=None, name=None, problem=str(exc)[:200])
        else:
            entry.update(
                task_id=message.id,
                name=message.task,
                attempt=message.attempt,
                args=clip(message.args, 500),
                kwargs=clip(message.kwargs, 500),
            )
        shown.append(entry)
    return shown


async def schedules(broker: Broker) -> dict[str, Any]:
    """Every schedule with its next and last fire and whether it is paused, and
    which scheduler leads (read afresh: a handful of store reads)."""
    book = broker.schedules
    statuses = await book.status()
    paused = await book.paused()
    return {
        "schedules": [
            {
                "name": s.schedule.name,
                "task": s.schedule.task,
                "spec": s.schedule.spec.describe(),
                "queue": s.schedule.queue,
                "next_fire": s.next_fire,
                "last_fire": s.last_fire,
                "paused": s.schedule.name in paused,
                "stored": s.schedule.name not in book.code,
            }
            for s in statuses
        ],
        "scheduler": await book.active(),
        "store": broker.store is not None,
    }


async def shutdown_worker(broker: Broker, worker: str) -> str:
    answers = await broker.control.shutdown(worker=worker)
    if not answers:
        raise ActionError(f"worker {worker} did not answer; is it still running?")
    return f"worker {worker} is shutting down"


async def rate_limit(broker: Broker, task: str, rate: str) -> str:
    if not task:
        raise ActionError("name the task whose rate limit to change")
    value = rate.strip() or None
    if value is not None and value.lower() == "none":
        value = None
    try:
        answers = await broker.control.rate_limit(task, value)
    except ConfigurationError as exc:
        raise ActionError(str(exc)) from None
    if not answers:
        raise ActionError("no worker answered; are workers running?")
    limit = value or "no limit"
    return f"{task}: {limit} on {len(answers)} worker(s)"


async def cancel(broker: Broker, task_id: str) -> str:
    if not task_id:
        raise ActionError("name the task to cancel")
    await broker.cancel(task_id)
    return f"task {task_id} cancelled"


async def retry(broker: Broker, task_id: str, queue: str | None) -> str:
    """Send dead-lettered task ``task_id`` back to its queue (``queue``, or any
    queue the app uses, when not known)."""
    queues = [queue] if queue else broker.queues
    for name in queues:
        for letter in await dead_letters(broker, name):
            if letter.get("task_id") == task_id:
                await broker.admin.requeue_dead(name, [letter["id"]])
                return f"task {task_id} sent back to {name}"
    raise ActionError(
        f"task {task_id} is not among the oldest {DEAD_PAGE} dead letters of "
        f"{', '.join(queues) or 'any queue'}: only a task that failed for good (and was "
        "dead-lettered) can be retried"
    )


async def purge(broker: Broker, queue: str) -> str:
    count = await broker.admin.purge(queue)
    return f"{count} message(s) deleted from {queue}"


async def requeue_dead(broker: Broker, queue: str, ids: Sequence[str] | None) -> str:
    count = await broker.admin.requeue_dead(queue, ids)
    return f"{count} dead letter(s) of {queue} sent back"


async def purge_dead(broker: Broker, queue: str) -> str:
    count = await broker.admin.purge_dead(queue)
    return f"{count} dead letter(s) of {queue} deleted"


async def pause_schedule(broker: Broker, name: str, *, pause: bool) -> str:
    try:
        if pause:
            await broker.schedules.pause(name)
            return f"schedule {name} paused"
        await broker.schedules.resume(name)
    except ConfigurationError as exc:
        raise ActionError(str(exc)) from None
    return f"schedule {name} resumed"

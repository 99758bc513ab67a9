"""Inspecting and repairing queues: what ``aq queues``, ``aq purge`` and ``aq dlq`` do.

Each function connects with the broker's transport, does one job and returns
plain data, so the CLI stays a thin layer of printing and prompting.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from aq.broker import Broker
from aq.envelope import Codec, frame_info
from aq.errors import MessageDecodeError, UntrustedMessage
from aq.serializer import json_default
from aq.transport.admin import DeadLetter, QueueStats

__all__ = [
    "Peek",
    "dead_letters",
    "peek",
    "purge",
    "purge_dead",
    "queue_stats",
    "requeue_dead",
    "shown",
]


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


@dataclass(frozen=True, slots=True)
class Peek:
    """What a dead letter's body holds, read to be shown (its signature unchecked:
    the letter's reason says whether it was trusted)."""

    #: The task it names, or a note saying why none can be read.
    name: str
    #: The decoded message, or ``None`` if it could not be decoded.
    message: Any
    #: How it came: content type, compression and signing key, as words.
    form: str
    #: Why it could not be decoded, or ``None``.
    problem: str | None = None


def peek(body: bytes, codec: Codec) -> Peek:
    """Read ``body`` as ``aq dlq list`` shows it, whatever its content type,
    compression or signature (never to act on: nothing is verified)."""
    try:
        opened = codec.open(body, verify=False)
    except MessageDecodeError as exc:
        return Peek("(undecodable)", None, _form_of(body), str(exc))
    value = opened.value
    form = opened.content_type.removeprefix("application/")
    if opened.compression:
        form += f", {opened.compression}"
    if opened.key_id:
        form += f", signed by key {opened.key_id}"
        if codec.keyring is not None:
            try:
                codec.open(body)
            except UntrustedMessage:
                form += " (the signature does not verify)"
            else:
                form += " (verified)"
    else:
        form += ", unsigned"
    name = value.get("task") if isinstance(value, dict) else None
    return Peek(name if isinstance(name, str) else "(no task name)", value, form)


def _form_of(body: bytes) -> str:
    try:
        info = frame_info(body)
    except MessageDecodeError:
        return "not an aq message"
    return info.content_type.removeprefix("application/")


def shown(value: Any) -> str:
    """A decoded message as indented JSON (bytes as base64), for a person to read;
    as Python would print it if JSON cannot hold it (nested too deep, say)."""
    options = orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS
    try:
        return orjson.dumps(value, default=json_default, option=options).decode()
    except TypeError:  # orjson.JSONEncodeError
        return repr(value)

"""``task.kiq_many(calls)``: many plain calls of one task sent in bulk.

Every call is checked and encoded before the first is sent, so a bad argument
fails the whole call with nothing sent; then the messages go a window at a
time, concurrently (pipelined on Redis, one window of publisher confirms on
RabbitMQ), and each gets its own handle.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from aq.errors import ConfigurationError
from aq.handle import TaskHandle
from aq.message import TaskMessage
from aq.workflow.canvas import Signature
from aq.workflow.driver import DEFAULT_WINDOW

if TYPE_CHECKING:
    from aq.task import AnyTask

__all__ = ["send_many"]


async def send_many(task: AnyTask, calls: Iterable[Signature[Any, Any]]) -> list[TaskHandle[Any]]:
    """Send ``calls`` (signatures of ``task``); their handles, in order.

    Raises:
        aq.ConfigurationError: a call is not a complete ``task.s(...)`` without
            callbacks.
        aq.SerializationError: an argument cannot be encoded (nothing was sent).
        aq.BrokerError: the broker did not accept a message.
    """
    from aq.task import _DEFAULT_OPTIONS

    broker = task.broker
    reply_to = broker.listening_address or await broker.reply_address()
    prepared: list[tuple[TaskMessage, bytes]] = []
    handles: list[TaskHandle[Any]] = []
    unique: list[tuple[int, Signature[Any, Any]]] = []
    for call in calls:
        if not isinstance(call, Signature) or call.task is not task:
            raise ConfigurationError(
                f"{task.name}.kiq_many() takes calls made with {task.name}.s(...), not {call!r}"
            )
        if not call.is_plain:
            raise ConfigurationError(
                f"{call!r} has link or link_error callbacks: send it with its own kiq()"
            )
        call.check_complete()
        options = call.send_options or _DEFAULT_OPTIONS
        if options.unique_for or task.config.unique_for:  # sent one by one, after the rest
            broker.encode(task.message(call.args, call.kwargs, options, reply_to), task)
            unique.append((len(handles), call))
            handles.append(None)  # type: ignore[arg-type]  # filled in below
            continue
        message = task.message(call.args, call.kwargs, options, reply_to)
        prepared.append((message, await broker.prepare(message, task)))
        handles.append(task._handle(message.id, broker.register_waiter(message.id)))
    for start in range(0, len(prepared), DEFAULT_WINDOW):
        await broker.publish_prepared(prepared[start : start + DEFAULT_WINDOW])
    for index, call in unique:
        handles[index] = await call.kiq()
    return handles

"""aq: an asyncio-native distributed task queue.

Define tasks with ``@broker.task``, send them with ``await task.kiq(...)``, run
them with ``aq worker module:broker``, and await results pushed back to the
producer. The names below are the whole public API; everything else lives in
modules you do not need to import. ``aq.Worker`` and ``aq.Scheduler`` are
imported on first use, so a process that only sends tasks never loads them.
"""

from typing import TYPE_CHECKING

from aq.broker import Broker
from aq.context import TaskContext, context
from aq.errors import (
    AQError,
    BrokerError,
    BrokerUnavailable,
    ConfigurationError,
    ConnectionLost,
    MessageDecodeError,
    ResultNotFound,
    ResultTimeout,
    Retry,
    SerializationError,
    SoftTimeLimit,
    StartupFailed,
    TaskCancelled,
    TaskExpired,
    TaskFailed,
    TaskTimeout,
    UnknownTask,
    UntrustedMessage,
    WorkerCrashed,
)
from aq.handle import StreamHandle, TaskHandle
from aq.lifecycle import Resource, State
from aq.message import TaskMessage
from aq.middleware import Middleware, Outcome
from aq.monitor.status import TaskStatus
from aq.monitor.wire import Event
from aq.scheduling.entry import Schedule
from aq.scheduling.spec import Cron, Every, ScheduleSpec, cron, every
from aq.task import StreamTask, SyncTask, Task, TaskCall
from aq.version import __version__ as __version__
from aq.web import dashboard
from aq.workflow.advance import Failure
from aq.workflow.canvas import Canvas, Chain, Chord, Group, Signature
from aq.workflow.compose import chain, chord, group
from aq.workflow.handles import GroupHandle

if TYPE_CHECKING:
    from aq.scheduling.scheduler import Scheduler
    from aq.worker.worker import Worker


__all__ = [
    "AQError",
    "Broker",
    "BrokerError",
    "BrokerUnavailable",
    "Canvas",
    "Chain",
    "Chord",
    "ConfigurationError",
    "ConnectionLost",
    "Cron",
    "Event",
    "Every",
    "Failure",
    "Group",
    "GroupHandle",
    "MessageDecodeError",
    "Middleware",
    "Outcome",
    "Resource",
    "ResultNotFound",
    "ResultTimeout",
    "Retry",
    "Schedule",
    "ScheduleSpec",
    "Scheduler",
    "SerializationError",
    "Signature",
    "SoftTimeLimit",
    "StartupFailed",
    "State",
    "StreamHandle",
    "StreamTask",
    "SyncTask",
    "Task",
    "TaskCall",
    "TaskCancelled",
    "TaskContext",
    "TaskExpired",
    "TaskFailed",
    "TaskHandle",
    "TaskMessage",
    "TaskStatus",
    "TaskTimeout",
    "UnknownTask",
    "UntrustedMessage",
    "Worker",
    "WorkerCrashed",
    "chain",
    "chord",
    "context",
    "cron",
    "dashboard",
    "every",
    "group",
]


def __getattr__(name: str) -> object:
    if name == "Worker":
        from aq.worker.worker import Worker  # the producer side never needs it

        return Worker
    if name == "Scheduler":
        from aq.scheduling.scheduler import Scheduler

        return Scheduler
    raise AttributeError(f"module 'aq' has no attribute {name!r}")

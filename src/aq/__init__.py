"""aq: an asyncio-native distributed task queue.

Define tasks with ``@broker.task``, send them with ``await task.kiq(...)``, run
them with ``aq worker module:broker``, and await results pushed back to the
producer. The names below are the whole public API; everything else lives in
modules you do not need to import.
"""

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
    TaskCancelled,
    TaskExpired,
    TaskFailed,
    TaskTimeout,
    UnknownTask,
    WorkerCrashed,
)
from aq.handle import StreamHandle, TaskHandle
from aq.message import TaskMessage
from aq.middleware import Middleware, Outcome
from aq.task import StreamTask, SyncTask, Task, TaskCall
from aq.worker.worker import Worker

__version__ = "0.1.0"

__all__ = [
    "AQError",
    "Broker",
    "BrokerError",
    "BrokerUnavailable",
    "ConfigurationError",
    "ConnectionLost",
    "MessageDecodeError",
    "Middleware",
    "Outcome",
    "ResultNotFound",
    "ResultTimeout",
    "Retry",
    "SerializationError",
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
    "TaskTimeout",
    "UnknownTask",
    "Worker",
    "WorkerCrashed",
    "context",
]

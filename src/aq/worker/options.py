"""``WorkerOptions``: every setting of one worker, carried whole from the CLI to it.

``aq worker`` builds one :class:`WorkerOptions` from its flags; the launcher
hands it to the worker of this process, or turns it back into flags for each
child process (:meth:`WorkerOptions.child_args`, generated from the fields), and
:class:`~aq.worker.worker.Worker` reads it (``Worker(broker, options=...)``).
Adding a worker option is adding a field here (with its check in
``__post_init__``) and its flag to ``aq worker``, then reading
``worker.options.<field>`` where it applies; a keyword of ``aq.Worker`` of its
own is optional.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from aq.errors import ConfigurationError
from aq.options import RateLimit, check_count, check_seconds, parse_rate_limit

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_HANDOFF_TIMEOUT",
    "DEFAULT_LEASE_TIME",
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "CrashMode",
    "WorkerOptions",
]

DEFAULT_CONCURRENCY = 1000
DEFAULT_SHUTDOWN_TIMEOUT = 30.0
#: Seconds a finished task's outcome is kept through a broker outage (see handoff.py).
DEFAULT_HANDOFF_TIMEOUT = 300.0
#: Seconds a lease of a worker (a global concurrency slot, the scheduler's
#: leadership) outlives it if it dies.
DEFAULT_LEASE_TIME = 10.0

#: What becomes of a message whose workers died while running it (see crashes.py).
CrashMode = Literal["inline", "isolate", "isolated"]


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """One worker's settings; see :class:`aq.Worker` for what each means.

    ``max_tasks_per_child`` is the Worker's ``max_tasks``.
    """

    queues: tuple[str, ...] | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    max_tasks_per_child: int | None = None
    crashes: CrashMode = "inline"
    handoff_timeout: float = DEFAULT_HANDOFF_TIMEOUT
    lease_time: float = DEFAULT_LEASE_TIME
    scheduler: bool = False
    #: Emit monitoring events (``aq worker --events``).
    events: bool = False
    #: Serve Prometheus metrics and /healthz on this port (``--metrics-port``);
    #: with a supervisor, it serves them for all its workers.
    metrics_port: int | None = None
    #: The address the metrics port listens on.
    metrics_host: str = "0.0.0.0"
    #: The time limit, retries and rate limit (per task, per process) of the
    #: tasks that set none of their own.
    default_timeout: float | None = None
    default_retries: int | None = None
    default_rate_limit: str | None = None
    #: Replace the process once its resident memory passes this many MiB
    #: (``--max-memory-per-child``; see :mod:`aq.worker.memory`).
    max_memory_per_child: int | None = None

    def __post_init__(self) -> None:
        concurrency = self.concurrency
        if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
            raise ConfigurationError(f"concurrency must be a positive int, not {concurrency!r}")
        if self.shutdown_timeout < 0:
            raise ConfigurationError("shutdown_timeout must not be negative")
        if not self.handoff_timeout > 0:
            raise ConfigurationError("handoff_timeout must be a positive number of seconds")
        if not self.lease_time > 0:
            raise ConfigurationError("lease_time must be a positive number of seconds")
        if self.max_tasks_per_child is not None and self.max_tasks_per_child < 1:
            raise ConfigurationError("max_tasks must be a positive int")
        memory = self.max_memory_per_child
        if memory is not None and (
            not isinstance(memory, int) or isinstance(memory, bool) or memory < 1
        ):
            raise ConfigurationError(
                f"--max-memory-per-child must be a positive number of MB, not {memory!r}"
            )
        port = self.metrics_port
        if port is not None and (not isinstance(port, int) or not 0 <= port <= 65535):
            raise ConfigurationError(f"--metrics-port must be a port number, not {port!r}")
        check_seconds("--default-timeout", self.default_timeout)
        check_count("--default-retries", self.default_retries, least=0)
        self.default_rate()  # a bad rate fails here
        if self.crashes not in ("inline", "isolate", "isolated"):
            raise ConfigurationError(
                f"crashes must be 'inline', 'isolate' or 'isolated', not {self.crashes!r}"
            )

    def default_rate(self) -> RateLimit | None:
        """``default_rate_limit``, parsed (``--default-rate-limit none``: none)."""
        text = self.default_rate_limit
        if text is None or text.strip().lower() == "none":
            return None
        try:
            return parse_rate_limit(text)
        except ConfigurationError as exc:
            raise ConfigurationError(f"--default-rate-limit: {exc}") from None

    def replace(self, **changes: object) -> WorkerOptions:
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def child_args(self) -> list[str]:
        """These options as ``aq worker`` flags for a child process (``--crashes``,
        which the launcher decides for each child, is a hidden flag)."""
        args: list[str] = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None or value is False:
                continue
            flag = "--" + field.name.replace("_", "-")
            if value is True:
                args.append(flag)
                continue
            args += [flag, ",".join(value) if isinstance(value, tuple) else str(value)]
        return args

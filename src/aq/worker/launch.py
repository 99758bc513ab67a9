"""How ``aq worker`` lays out its processes.

* **Supervised** (the default): this process is a :class:`Supervisor` over
  ``--processes`` worker processes and, for network brokers, one isolation
  worker, which runs the tasks whose workers died while they ran, alone (see
  :mod:`aq.worker.crashes`). The workers move such tasks to it (crash mode
  ``isolate``).
* **Unsupervised** (``--no-supervise``, for a process manager that restarts the
  worker itself): this process is the worker, and keeps the isolation worker
  running as its own child.
* A **child** (``--supervised``, internal) is one worker started by either:
  a plain worker, or with ``--isolation`` the isolation worker.

The memory broker lives inside one process, so no process can isolate for
another: its workers run crashed tasks again in place (crash mode ``inline``).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aq.broker import Broker
from aq.logs import event
from aq.worker import runner
from aq.worker.crashes import CrashMode
from aq.worker.supervisor import Supervisor

__all__ = ["Options", "run_child", "run_supervisor", "run_unsupervised"]

log = logging.getLogger("aq.cli")


@dataclass(frozen=True, slots=True)
class Options:
    """The ``aq worker`` options every process of one worker shares."""

    app: str
    concurrency: int
    queues: str | None
    shutdown_timeout: float
    max_tasks_per_child: int | None
    log_level: str
    loop: str
    handoff_timeout: float

    @property
    def queue_list(self) -> list[str] | None:
        return [q.strip() for q in self.queues.split(",") if q.strip()] if self.queues else None

    def child_args(self, *, isolation: bool = False) -> list[str]:
        """The arguments after ``python -m aq`` that start one child worker."""
        args = ["worker", self.app, "--supervised"]
        args += ["--shutdown-timeout", str(self.shutdown_timeout)]
        args += ["--handoff-timeout", str(self.handoff_timeout)]
        args += ["--log-level", self.log_level, "--loop", self.loop]
        if self.queues:
            args += ["--queues", self.queues]
        if isolation:
            return [*args, "--isolation"]
        args += ["--concurrency", str(self.concurrency)]
        if self.max_tasks_per_child is not None:
            args += ["--max-tasks-per-child", str(self.max_tasks_per_child)]
        return args


def run_supervisor(broker: Broker, options: Options, processes: int) -> None:
    """Supervise ``processes`` workers, and the isolation worker for network brokers."""
    in_process = _in_process(broker, "each worker process has its own queues")
    isolation = None if in_process else options.child_args(isolation=True)
    supervisor = Supervisor(options.child_args(), processes, options.shutdown_timeout, isolation)
    asyncio.run(supervisor.run())


def run_unsupervised(broker: Broker, options: Options) -> None:
    """Run one worker in this process, with the isolation worker as its child."""
    in_process = _in_process(broker, "this worker only runs tasks sent from its own process")
    runner.run(
        broker,
        queues=options.queue_list,
        concurrency=options.concurrency,
        shutdown_timeout=options.shutdown_timeout,
        handoff_timeout=options.handoff_timeout,
        loop=options.loop,
        crashes=_crash_mode(broker),
        isolation_args=None if in_process else options.child_args(isolation=True),
    )


def run_child(broker: Broker, options: Options, *, isolation: bool) -> None:
    """Run one worker started by a supervisor: a plain one, or the isolation worker."""
    crashes: CrashMode = "isolated" if isolation else _crash_mode(broker)
    runner.run(
        broker,
        queues=options.queue_list,
        concurrency=options.concurrency,
        shutdown_timeout=options.shutdown_timeout,
        handoff_timeout=options.handoff_timeout,
        max_tasks=None if isolation else options.max_tasks_per_child,
        watch_parent=True,
        loop=options.loop,
        crashes=crashes,
    )


def _crash_mode(broker: Broker) -> CrashMode:
    return "inline" if broker.transport.in_process else "isolate"


def _in_process(broker: Broker, consequence: str) -> bool:
    """Whether ``broker`` is the memory broker; if so, warn of ``consequence``."""
    if broker.transport.in_process:
        event(
            log,
            logging.WARNING,
            "worker.memory_broker",
            note=f"memory:// is in-process: {consequence}",
        )
    return broker.transport.in_process

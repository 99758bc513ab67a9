"""How ``aq worker`` lays out its processes.

* **Supervised** (the default): this process is a :class:`Supervisor` over
  ``--processes`` worker processes and, for network brokers, one isolation
  worker, which runs the tasks whose workers died while they ran, alone (see
  :mod:`aq.worker.crashes`). The workers move such tasks to it (crash mode
  ``isolate``). With ``--autoscale MIN,MAX`` the number of worker processes
  follows the load (:mod:`aq.worker.autoscale`); with ``--reload``, one worker
  process restarts when the app's code changes (:mod:`aq.worker.reload`).
  :class:`Processes` checks how these flags combine.
* **Unsupervised** (``--no-supervise``, for a process manager that restarts the
  worker itself): this process is the worker, and keeps the isolation worker
  running as its own child.
* A **child** (``--supervised``, internal) is one worker started by either:
  a plain worker, or with ``--isolation`` the isolation worker.

The memory broker lives inside one process, so no process can isolate for
another: its workers run crashed tasks again in place (crash mode ``inline``).

Before the supervisor starts any child it connects to the broker once: a
broker that refuses the app's configuration (wrong credentials, a TLS
certificate that does not verify, a virtual host the user may not use) fails
``aq worker`` at once with that error, where each child would fail in turn for
as long as the supervisor restarted it. A broker that cannot be reached yet
is left to the children, which keep trying.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from aq.broker import Broker
from aq.errors import BrokerError, ConfigurationError
from aq.logs import event
from aq.monitor.fleet import FleetMetrics
from aq.monitor.http import bind
from aq.worker import reload, runner
from aq.worker.autoscale import Autoscaler, Policy
from aq.worker.options import CrashMode, WorkerOptions
from aq.worker.supervisor import EXIT_SHUT_DOWN, EXIT_STARTUP_FAILED, Companion, Supervisor

__all__ = ["Launch", "Processes", "run_child", "run_supervisor", "run_unsupervised"]

log = logging.getLogger("aq.cli")


@dataclass(frozen=True, slots=True)
class Launch:
    """How ``aq worker`` runs: the app, its process-wide settings and the worker's."""

    app: str
    log_level: str
    loop: str
    worker: WorkerOptions

    def child_args(self, crashes: CrashMode) -> list[str]:
        """The arguments after ``python -m aq`` that start one child worker."""
        worker = self.worker.replace(crashes=crashes)
        if crashes == "isolated":  # one message at a time, for as long as it lives
            worker = worker.replace(max_tasks_per_child=None, scheduler=False)
        args = ["worker", self.app, "--supervised", "--log-level", self.log_level]
        return [*args, "--loop", self.loop, *worker.child_args()]


@dataclass(frozen=True, slots=True)
class Processes:
    """How many worker processes the supervisor runs, and what changes them."""

    #: Worker processes to run (at first, with ``autoscale``).
    count: int = 1
    #: ``--autoscale``: when to scale between its MIN and MAX.
    autoscale: Policy | None = None
    #: ``--reload``: whether to restart the worker when the code changes.
    reload: bool = False
    #: ``--reload-dir``: what to watch instead of the app's source tree.
    reload_dirs: tuple[Path, ...] = ()

    @classmethod
    def from_flags(
        cls,
        *,
        supervise: bool,
        processes: int | None,
        autoscale: str | None = None,
        scale_down_after: float | None = None,
        reload: bool = False,
        reload_dirs: Sequence[Path] = (),
        needs_supervisor: Sequence[str] = (),
    ) -> Processes:
        """Check how ``aq worker``'s flags combine; ``needs_supervisor`` names the
        other flags given that only a supervisor can honour.

        Raises:
            aq.ConfigurationError: saying which flag to change.
        """
        given = [
            *(["--processes"] if processes is not None and processes > 1 else []),
            *(["--autoscale"] if autoscale is not None else []),
            *(["--reload"] if reload else []),
            *needs_supervisor,
        ]
        if not supervise and given:
            raise ConfigurationError(f"{given[0]} needs the supervisor: drop --no-supervise")
        if reload and (processes is not None or autoscale is not None):
            other = "--processes" if processes is not None else "--autoscale"
            raise ConfigurationError(f"--reload runs one worker process: drop {other}")
        if reload_dirs and not reload:
            raise ConfigurationError("--reload-dir names what --reload watches: add --reload")
        for directory in reload_dirs:
            if not directory.is_dir():
                problem = "not a directory" if directory.exists() else "no such directory"
                raise ConfigurationError(f"--reload-dir {directory}: {problem}")
        if scale_down_after is not None and autoscale is None:
            raise ConfigurationError(
                "--scale-down-after applies to --autoscale: add --autoscale MIN,MAX"
            )
        if autoscale is None:
            return cls(processes or 1, None, reload, tuple(reload_dirs))
        if processes is not None:
            raise ConfigurationError(
                "--autoscale MIN,MAX sets the number of processes: drop --processes"
            )
        policy = Policy.parse(autoscale, scale_down_after)
        return cls(policy.minimum, policy)

    def check(self) -> None:
        """Raises:
        aq.ConfigurationError: ``--reload`` without watchfiles installed.
        """
        if self.reload:
            reload.check_available()


def run_supervisor(broker: Broker, launch: Launch, plan: Processes) -> None:
    """Supervise the workers ``plan`` says, and the isolation worker for network brokers.

    Raises:
        aq.ConfigurationError: ``--autoscale`` on the memory broker.
    """
    in_process = _in_process(broker, "each worker process has its own queues")
    if plan.autoscale is not None and in_process:
        raise ConfigurationError(
            "--autoscale scales by the backlog of the broker's queues, and memory:// has "
            "queues of its own in each worker process: use Redis or RabbitMQ"
        )
    if not in_process:
        _check_configuration(broker)
    isolation = None if in_process else launch.child_args("isolated")
    children = launch.child_args(_crash_mode(broker))
    options = launch.worker
    metrics: Callable[[Supervisor], FleetMetrics] | None = None
    if options.metrics_port is not None:
        # Bound first: a port in use fails at once, before any child starts.
        sock = bind(options.metrics_host, options.metrics_port)
        queues = broker.queue_names(options.queues)

        def metrics(supervisor: Supervisor) -> FleetMetrics:
            return FleetMetrics(sock, broker, queues, supervisor.live_children)

    companions: list[Companion] = []
    if plan.autoscale is not None:
        queues = broker.queue_names(options.queues)
        companions.append(Autoscaler(plan.autoscale, broker, queues))
    if plan.reload:
        roots = list(plan.reload_dirs) or reload.source_roots(launch.app)
        companions.append(reload.Reloader(roots))
    supervisor = Supervisor(
        children, plan.count, options.shutdown_timeout, isolation, metrics, companions
    )
    asyncio.run(supervisor.run())
    if supervisor.startup_failed:  # it would fail the same way for ever
        raise SystemExit(EXIT_STARTUP_FAILED)
    if (
        supervisor.shut_down
    ):  # told to (aq control shutdown): a process manager should not restart it
        raise SystemExit(EXIT_SHUT_DOWN)


def run_unsupervised(broker: Broker, launch: Launch) -> None:
    """Run one worker in this process, with the isolation worker as its child."""
    in_process = _in_process(broker, "this worker only runs tasks sent from its own process")
    code = runner.run(
        broker,
        launch.worker.replace(crashes=_crash_mode(broker)),
        loop=launch.loop,
        isolation_args=None if in_process else launch.child_args("isolated"),
    )
    if code:
        raise SystemExit(code)


def run_child(broker: Broker, launch: Launch) -> None:
    """Run one worker started by a supervisor (its crash mode is in its options)."""
    code = runner.run(broker, launch.worker, loop=launch.loop, watch_parent=True)
    if code:
        raise SystemExit(code)


def _check_configuration(broker: Broker) -> None:
    """Connect to the broker and disconnect (see the module docstring).

    Raises:
        aq.ConfigurationError: the broker refused the app's configuration.
    """

    async def connect() -> None:
        try:
            await broker.connect()  # no hooks: they are for the workers
        finally:
            await broker.shutdown()

    with contextlib.suppress(BrokerError):  # unreachable for now: the children retry
        asyncio.run(connect())


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

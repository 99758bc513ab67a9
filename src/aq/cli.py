"""The ``aq`` command: a thin typer layer that parses options and calls the runtime."""

from __future__ import annotations

import datetime
import textwrap
from pathlib import Path
from typing import Annotated, Any, cast

import typer

from aq import admin
from aq.broker import Broker
from aq.clikit import AppArgument, load_broker
from aq.clikit import broker_or_exit as _broker_or_exit
from aq.clikit import fail as _fail
from aq.clikit import run as _run
from aq.errors import AQError, ConfigurationError
from aq.logs import configure
from aq.monitor.commands import register as register_monitoring
from aq.web.serve import dashboard_command
from aq.worker.options import (
    DEFAULT_CONCURRENCY,
    DEFAULT_HANDOFF_TIMEOUT,
    DEFAULT_LEASE_TIME,
    DEFAULT_SHUTDOWN_TIMEOUT,
    CrashMode,
    WorkerOptions,
)

__all__ = ["app", "load_broker", "main"]

app = typer.Typer(
    name="aq",
    help="aq: an asyncio-native distributed task queue.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
def worker(
    app_spec: Annotated[
        str, typer.Argument(metavar="APP", help="The broker to serve, as MODULE:ATTRIBUTE.")
    ],
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency",
            "-c",
            min=1,
            help="Most tasks running at once per process; also bounds prefetch.",
        ),
    ] = DEFAULT_CONCURRENCY,
    processes: Annotated[
        int | None,
        typer.Option(
            "--processes",
            "-p",
            min=1,
            help="Worker processes to run under a supervisor that restarts them [default: 1].",
        ),
    ] = None,
    queues: Annotated[
        str | None,
        typer.Option(
            "--queues", "-q", help="Comma-separated queues to consume (default: all the tasks use)."
        ),
    ] = None,
    shutdown_timeout: Annotated[
        float,
        typer.Option(
            "--shutdown-timeout",
            min=0.0,
            help="Seconds running tasks get to finish on SIGTERM before they are "
            "cancelled and returned to the queue.",
        ),
    ] = DEFAULT_SHUTDOWN_TIMEOUT,
    max_tasks_per_child: Annotated[
        int | None,
        typer.Option(
            "--max-tasks-per-child",
            min=1,
            help="Replace a worker process after it has started this many tasks.",
        ),
    ] = None,
    handoff_timeout: Annotated[
        float,
        typer.Option(
            "--handoff-timeout",
            min=0.001,
            help="Seconds a finished task's outcome is kept while the broker cannot be "
            "reached, before its message is left to be delivered again.",
        ),
    ] = DEFAULT_HANDOFF_TIMEOUT,
    lease_time: Annotated[
        float,
        typer.Option(
            "--lease-time",
            min=0.001,
            help="Seconds a lease of a worker that died stays taken (a global "
            "concurrency slot; the scheduler's leadership with --scheduler); renewed "
            "every third of this while held.",
        ),
    ] = DEFAULT_LEASE_TIME,
    scheduler: Annotated[
        bool,
        typer.Option(
            "--scheduler",
            help="Also run a scheduler in each worker process: one of all the "
            "schedulers running leads and fires the schedules.",
        ),
    ] = False,
    events: Annotated[
        bool,
        typer.Option(
            "--events",
            help="Emit monitoring events (task-received, task-succeeded... and the "
            "worker's heartbeats) for aq events, aq top and other watchers.",
        ),
    ] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            min=0,
            max=65535,
            help="Serve Prometheus metrics on /metrics and a health check on /healthz "
            "at this port (for every worker process of this command).",
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option("--metrics-host", help="The address the metrics port listens on.")
    ] = "0.0.0.0",
    default_timeout: Annotated[
        float | None,
        typer.Option(
            "--default-timeout",
            help="Seconds an attempt may run, for the tasks that set no timeout.",
        ),
    ] = None,
    default_retries: Annotated[
        int | None,
        typer.Option(
            "--default-retries",
            help="Retries of a failed attempt, for the tasks that set no retries.",
        ),
    ] = None,
    default_rate_limit: Annotated[
        str | None,
        typer.Option(
            "--default-rate-limit",
            help="Starts per worker process of each task that sets no rate limit, "
            "such as 100/s or 10/m.",
        ),
    ] = None,
    log_level: Annotated[
        str, typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR.")
    ] = "INFO",
    loop: Annotated[
        str,
        typer.Option(
            "--loop",
            help="The event loop: uvloop, asyncio, or auto (uvloop if it is installed).",
        ),
    ] = "auto",
    supervise: Annotated[
        bool,
        typer.Option(
            "--supervise/--no-supervise",
            help="Run the worker processes under a supervisor that restarts them (the "
            "default); --no-supervise runs one worker in this process, for a process "
            "manager that restarts it.",
        ),
    ] = True,
    autoscale: Annotated[
        str | None,
        typer.Option(
            "--autoscale",
            metavar="MIN,MAX",
            help="Run between MIN and MAX worker processes, adding one while the backlog "
            "grows and every process is busy, retiring one after --scale-down-after "
            "seconds idle (instead of --processes).",
        ),
    ] = None,
    scale_down_after: Annotated[
        float | None,
        typer.Option(
            "--scale-down-after",
            min=0.001,
            metavar="SECONDS",
            help="With --autoscale: how long the backlog is empty and a process idle "
            "before that process stops (default 30).",
        ),
    ] = None,
    max_memory_per_child: Annotated[
        int | None,
        typer.Option(
            "--max-memory-per-child",
            min=1,
            metavar="MB",
            help="Replace a worker process whose resident memory passes this many MB, "
            "once its running tasks finish.",
        ),
    ] = None,
    reload: Annotated[
        bool,
        typer.Option(
            "--reload",
            help="For development: restart the worker when the app's code changes "
            "(needs aq-tasks[reload]).",
        ),
    ] = False,
    reload_dir: Annotated[
        list[Path] | None,
        typer.Option(
            "--reload-dir",
            metavar="DIR",
            help="With --reload: watch DIR instead of the app's source tree (repeatable).",
        ),
    ] = None,
    supervised: Annotated[bool, typer.Option("--supervised", hidden=True)] = False,
    crashes: Annotated[str, typer.Option("--crashes", hidden=True)] = "isolate",
) -> None:
    """Run a worker that executes the tasks of APP's broker."""
    level = _level(log_level)
    configure(level)
    from aq.worker.runner import loop_factory

    try:
        loop_factory(loop)  # a bad --loop fails here, before anything starts
    except AQError as exc:
        _fail(exc)
    try:
        broker = load_broker(app_spec)
    except AQError as exc:
        _fail(exc)
        return
    from aq.worker import launch

    try:
        plan = launch.Processes.from_flags(
            supervise=supervise,
            processes=processes,
            autoscale=autoscale,
            scale_down_after=scale_down_after,
            reload=reload,
            reload_dirs=reload_dir or (),
            needs_supervisor=[
                flag
                for flag, value in [
                    ("--max-tasks-per-child", max_tasks_per_child),
                    ("--max-memory-per-child", max_memory_per_child),
                ]
                if value is not None
            ],
        )
        plan.check()
        options = WorkerOptions(
            tuple(q.strip() for q in queues.split(",") if q.strip()) if queues else None,
            concurrency,
            shutdown_timeout,
            max_tasks_per_child,
            cast(CrashMode, crashes),
            handoff_timeout,
            lease_time,
            scheduler,
            events,
            metrics_port,
            metrics_host,
            default_timeout,
            default_retries,
            default_rate_limit,
            max_memory_per_child,
        )
        how = launch.Launch(app_spec, level, loop, options)
        if supervised:  # a child of the supervisor
            launch.run_child(broker, how)
        elif supervise:
            launch.run_supervisor(broker, how, plan)
        else:
            launch.run_unsupervised(broker, how)
    except AQError as exc:
        _fail(exc)


QueueOption = Annotated[str, typer.Option("--queue", "-q", help="The queue.")]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]

dlq = typer.Typer(help="Inspect, requeue and purge dead letters.", no_args_is_help=True)
app.add_typer(dlq, name="dlq")


def _confirm(question: str, yes: bool) -> None:
    if not yes and not typer.confirm(question):
        raise typer.Exit(1)


@app.command()
def queues(
    app_spec: AppArgument,
    extra: Annotated[
        list[str] | None, typer.Option("--queue", "-q", help="Also show this queue.")
    ] = None,
) -> None:
    """Show each queue's ready, delayed, unacked, isolated and dead messages, and consumers."""
    broker = _broker_or_exit(app_spec)
    names = list(dict.fromkeys([*broker.queues, *(extra or [])]))
    rows = _run(admin.queue_stats(broker, names))
    typer.echo(
        f"{'queue':<24} {'ready':>8} {'delayed':>8} {'unacked':>8} {'isolated':>8} "
        f"{'dead':>8} {'consumers':>9}"
    )
    for s in rows:
        typer.echo(
            f"{s.queue:<24} {s.ready:>8} {s.delayed:>8} {s.unacked:>8} {s.isolated:>8} "
            f"{s.dead:>8} {s.consumers:>9}"
        )


@app.command()
def purge(app_spec: AppArgument, queue: QueueOption = "default", yes: YesOption = False) -> None:
    """Delete every ready and delayed message of a queue."""
    broker = _broker_or_exit(app_spec)
    _confirm(f"Delete every waiting message of queue {queue!r}?", yes)
    typer.echo(f"purged {_run(admin.purge(broker, queue))} message(s) from {queue}")


@dlq.command("list")
def dlq_list(
    app_spec: AppArgument,
    queue: QueueOption = "default",
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many.")] = 50,
    show: Annotated[
        bool,
        typer.Option(
            "--show",
            help="Also print how each came (content type, compression, key) and "
            "its message as JSON.",
        ),
    ] = False,
) -> None:
    """List dead letters: id, when, task and reason."""
    broker = _broker_or_exit(app_spec)
    letters = _run(admin.dead_letters(broker, queue, limit))
    for letter in letters:
        when = datetime.datetime.fromtimestamp(letter.dead_at, datetime.UTC).isoformat(
            timespec="seconds"
        )
        seen = admin.peek(letter.body, broker.codec)
        typer.echo(f"{letter.id}  {when}  {seen.name}  {letter.reason}")
        if show:
            typer.echo(f"  {len(letter.body)} bytes: {seen.form}")
            if seen.message is not None:
                typer.echo(textwrap.indent(admin.shown(seen.message), "  "))
            else:
                typer.echo(f"  cannot be decoded: {seen.problem}")
    typer.echo(f"{len(letters)} dead letter(s) in {queue}")


@dlq.command("requeue")
def dlq_requeue(
    app_spec: AppArgument,
    queue: QueueOption = "default",
    ids: Annotated[
        list[str] | None, typer.Option("--id", help="Only this dead letter (repeatable).")
    ] = None,
    yes: YesOption = False,
) -> None:
    """Send dead letters back to their queue (all of them unless --id is given)."""
    broker = _broker_or_exit(app_spec)
    if not ids:
        _confirm(f"Requeue every dead letter of {queue!r}?", yes)
    count = _run(admin.requeue_dead(broker, queue, ids or None))
    typer.echo(f"requeued {count} dead letter(s) to {queue}")


@dlq.command("purge")
def dlq_purge(
    app_spec: AppArgument, queue: QueueOption = "default", yes: YesOption = False
) -> None:
    """Delete every dead letter of a queue."""
    broker = _broker_or_exit(app_spec)
    _confirm(f"Delete every dead letter of {queue!r}?", yes)
    typer.echo(f"purged {_run(admin.purge_dead(broker, queue))} dead letter(s) from {queue}")


@app.command("scheduler")
def scheduler_command(
    app_spec: AppArgument,
    lease_time: Annotated[
        float,
        typer.Option(
            "--lease-time",
            min=0.1,
            help="Seconds a scheduler that died keeps the others from leading (with "
            "a store lease; RabbitMQ alone hands over when its connection closes).",
        ),
    ] = DEFAULT_LEASE_TIME,
    log_level: Annotated[
        str, typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR.")
    ] = "INFO",
    loop: Annotated[
        str, typer.Option("--loop", help="The event loop: uvloop, asyncio, or auto.")
    ] = "auto",
) -> None:
    """Run a scheduler: it fires APP's schedules while it leads. Run several for
    high availability; one leads at a time."""
    configure(_level(log_level))
    broker = _broker_or_exit(app_spec)
    if broker.transport.in_process:
        _fail(
            ConfigurationError(
                f"{broker.url.split(':', 1)[0]}:// brokers live inside one process, so a "
                "scheduler in another sends nothing its workers see: run it in that "
                "process (aq.Worker(broker, scheduler=True)), or use Redis or RabbitMQ"
            )
        )
    from aq.scheduling import process

    try:
        process.run(broker, lease_time, loop)
    except AQError as exc:
        _fail(exc)


@app.command()
def schedules(
    app_spec: AppArgument,
    pause: Annotated[
        str | None, typer.Option("--pause", metavar="NAME", help="Pause this schedule first.")
    ] = None,
    resume: Annotated[
        str | None, typer.Option("--resume", metavar="NAME", help="Resume this schedule first.")
    ] = None,
) -> None:
    """List APP's schedules (from code and added at run time) with their next and
    last fire, and which scheduler leads; --pause or --resume one first."""
    broker = _broker_or_exit(app_spec)

    async def read() -> tuple[str, list[Any], frozenset[str]]:
        async with broker:
            if pause is not None:
                await broker.schedules.pause(pause)
            if resume is not None:
                await broker.schedules.resume(resume)
            active = await broker.schedules.active()
            paused = await broker.schedules.paused()
            return active or _no_leader(broker), await broker.schedules.status(), paused

    active, rows, paused = _run(read())
    typer.echo(f"active scheduler: {active}")
    typer.echo(f"{'name':<24} {'task':<28} {'next fire (UTC)':<20} {'last fire (UTC)':<20} when")
    for row in rows:
        schedule = row.schedule
        name = schedule.name + (" *" if schedule.stored else "")
        next_fire = "paused" if schedule.name in paused else _utc(row.next_fire)
        typer.echo(
            f"{name:<24} {schedule.task:<28} {next_fire:<20} "
            f"{_utc(row.last_fire):<20} {schedule.spec.describe()}"
        )
    typer.echo(f"{len(rows)} schedule(s); * added at run time")


def _no_leader(broker: Broker) -> str:
    if broker.store is None:
        return "not recorded: RabbitMQ elects it, and there is no store to record it in"
    return "none (no scheduler is running, or none has led for a lease time)"


def _utc(when: float | None) -> str:
    if when is None or when != when or when in (float("inf"), float("-inf")):
        return "-"
    return datetime.datetime.fromtimestamp(when, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _level(log_level: str) -> str:
    level = log_level.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        _fail(
            ConfigurationError(
                f"--log-level must be DEBUG, INFO, WARNING or ERROR, not {log_level!r}"
            )
        )
    return level


@app.callback()
def _root() -> None:
    """aq: an asyncio-native distributed task queue."""


register_monitoring(app)
app.command("dashboard")(dashboard_command)


def main() -> None:
    """Entry point of the ``aq`` console script."""
    app()

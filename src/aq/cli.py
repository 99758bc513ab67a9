"""The ``aq`` command: a thin typer layer that parses options and calls the runtime."""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import sys
from typing import Annotated

import typer

from aq.broker import Broker
from aq.errors import AQError, ConfigurationError
from aq.logs import configure, event
from aq.worker.worker import DEFAULT_CONCURRENCY, DEFAULT_SHUTDOWN_TIMEOUT

__all__ = ["app", "load_broker", "main"]

app = typer.Typer(
    name="aq",
    help="aq: an asyncio-native distributed task queue.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

log = logging.getLogger("aq.cli")


def load_broker(spec: str) -> Broker:
    """Import ``module:attribute`` and return the :class:`aq.Broker` it names.

    Raises:
        aq.ConfigurationError: the spec is malformed, the module cannot be
            imported, or the attribute is missing or not a Broker.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigurationError(
            f"invalid app {spec!r}: write MODULE:ATTRIBUTE, for example app.tasks:broker"
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import module {module_name!r}: {exc}") from exc
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigurationError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(obj, Broker):
        raise ConfigurationError(f"{spec} is a {type(obj).__name__}, not an aq.Broker")
    return obj


def _fail(exc: AQError) -> None:
    typer.secho(f"aq: error: {exc}", err=True, fg=typer.colors.RED)
    raise typer.Exit(2)


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
        int,
        typer.Option(
            "--processes",
            "-p",
            min=1,
            help="Worker processes to run under a supervisor that restarts them.",
        ),
    ] = 1,
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
    log_level: Annotated[
        str, typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR.")
    ] = "INFO",
    supervised: Annotated[bool, typer.Option("--supervised", hidden=True)] = False,
) -> None:
    """Run a worker that executes the tasks of APP's broker."""
    level = log_level.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        _fail(
            ConfigurationError(
                f"--log-level must be DEBUG, INFO, WARNING or ERROR, not {log_level!r}"
            )
        )
    configure(level)
    queue_list = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    try:
        broker = load_broker(app_spec)
    except AQError as exc:
        _fail(exc)
        return
    if not supervised and (processes > 1 or max_tasks_per_child is not None):
        from aq.worker.supervisor import Supervisor

        child = [
            "worker",
            app_spec,
            "--supervised",
            "--concurrency",
            str(concurrency),
            "--shutdown-timeout",
            str(shutdown_timeout),
            "--log-level",
            level,
        ]
        if queues:
            child += ["--queues", queues]
        if max_tasks_per_child is not None:
            child += ["--max-tasks-per-child", str(max_tasks_per_child)]
        if broker.transport.in_process:
            event(
                log,
                logging.WARNING,
                "worker.memory_broker",
                note="memory:// is in-process: each worker process has its own queues",
            )
        asyncio.run(Supervisor(child, processes, shutdown_timeout).run())
        return
    from aq.worker import runner

    if broker.transport.in_process and not supervised:
        event(
            log,
            logging.WARNING,
            "worker.memory_broker",
            note="memory:// is in-process: this worker only runs tasks sent from its own process",
        )
    try:
        runner.run(
            broker,
            queues=queue_list,
            concurrency=concurrency,
            shutdown_timeout=shutdown_timeout,
            max_tasks=max_tasks_per_child,
            watch_parent=supervised,
        )
    except AQError as exc:
        _fail(exc)


@app.callback()
def _root() -> None:
    """aq: an asyncio-native distributed task queue."""


def main() -> None:
    """Entry point of the ``aq`` console script."""
    app()

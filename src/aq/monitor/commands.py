"""The monitoring commands of ``aq``: status, inspect, control, events and top.

Thin: each parses its arguments, calls ``broker.status``, ``broker.inspect``,
``broker.control`` or the event stream, and prints what comes back, for
people by default and as JSON with ``--json``. A question nobody answers
exits with status 1, saying so; a bad argument exits with status 2.
"""

from __future__ import annotations

import contextlib
import json
from typing import Annotated, Any

import typer

from aq.broker import Broker
from aq.clikit import AppArgument, broker_or_exit, fail, run
from aq.errors import ConfigurationError
from aq.monitor.formats import event_line, status_lines, task_line, when
from aq.monitor.inspect import DEFAULT_TIMEOUT, QUESTIONS, Answers

__all__ = ["register"]

WorkerOption = Annotated[
    str | None, typer.Option("--worker", "-w", help="Ask only this worker (its id).")
]
TimeoutOption = Annotated[
    float,
    typer.Option("--timeout", "-t", min=0.001, help="Seconds to wait for the workers' answers."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]

control = typer.Typer(
    help="Tell live workers what to do: aq control APP rate-limit|shutdown|cancel ...",
    no_args_is_help=True,
)


@control.callback()
def _control_app(ctx: typer.Context, app_spec: AppArgument) -> None:
    """Tell the live workers of APP's broker what to do."""
    ctx.obj = app_spec


def register(app: typer.Typer) -> None:
    """Add the monitoring commands to the ``aq`` command."""
    app.command("status")(status)
    app.command("inspect")(inspect)
    app.add_typer(control, name="control")
    app.command("events")(events)
    app.command("top")(top)


def _json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


async def _with(broker: Broker, work: Any) -> Any:
    async with broker:
        return await work(broker)


def status(
    app_spec: AppArgument,
    task_id: Annotated[str, typer.Argument(help="The task's id.")],
    as_json: JsonOption = False,
) -> None:
    """Show what is known of one task: queued, running (where), succeeded, failed..."""
    broker = broker_or_exit(app_spec)
    found = run(_with(broker, lambda b: b.status(task_id)))
    if as_json:
        _json(found.to_dict())
    else:
        typer.echo("\n".join(status_lines(found)))


def inspect(
    app_spec: AppArgument,
    question: Annotated[str, typer.Argument(help=f"What to ask: {', '.join(QUESTIONS)}.")],
    worker: WorkerOption = None,
    timeout: TimeoutOption = DEFAULT_TIMEOUT,
    as_json: JsonOption = False,
) -> None:
    """Ask every live worker (or one) a question and print the answers."""
    if question not in QUESTIONS:
        fail(
            ConfigurationError(f"unknown question {question!r}: ask one of {', '.join(QUESTIONS)}")
        )
    broker = broker_or_exit(app_spec)
    answers: Answers = run(
        _with(broker, lambda b: b.inspect.ask(question, worker=worker, timeout=timeout))
    )
    _nobody(answers, worker, timeout)
    if as_json:
        _json(answers)
        return
    for worker_id, answer in sorted(answers.items()):
        typer.echo(f"{worker_id}:")
        for line in _answer_lines(question, answer):
            typer.echo(f"  {line}")


def _answer_lines(question: str, answer: dict[str, Any]) -> list[str]:
    if "error" in answer:
        return [f"error: {answer['error']}"]
    if question == "ping":
        return [str(answer.get("ok"))]
    if question in ("active", "reserved"):
        tasks = answer.get("tasks") or []
        return [task_line(t) for t in tasks] or ["(none)"]
    if question == "registered":
        return [
            f"{t['name']}  queue={t['queue']}  rate_limit={t['rate_limit'] or '-'}  "
            f"max_concurrency={t['max_concurrency'] or '-'}  timeout={t['timeout'] or '-'}  "
            f"retries={_retries(t.get('retries', 0))}"
            for t in answer.get("tasks") or []
        ] or ["(no tasks)"]
    return [
        f"{key}: {_stat(key, value)}" for key, value in sorted(answer.items()) if key != "worker"
    ]


def _retries(value: Any) -> str:
    return "unlimited" if value is None else str(value)


def _stat(key: str, value: Any) -> str:
    if key == "started_at" and isinstance(value, int | float):
        return when(value)
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def _nobody(answers: Answers, worker: str | None, timeout: float) -> None:
    """Exit with status 1 if no worker answered."""
    if answers:
        return
    if worker:
        text = f"no answer from worker {worker!r} within {timeout:g} s (is it running?)"
    else:
        text = f"no worker answered within {timeout:g} s (are workers running, on this broker?)"
    typer.secho(f"aq: {text}", err=True, fg=typer.colors.RED)
    raise typer.Exit(1)


def _report(answers: Answers, worker: str | None, timeout: float, as_json: bool) -> None:
    _nobody(answers, worker, timeout)
    if as_json:
        _json(answers)
    else:
        for worker_id, answer in sorted(answers.items()):
            verdict = f"error: {answer['error']}" if "error" in answer else answer.get("ok")
            typer.echo(f"{worker_id}: {verdict}")
    if all("error" in answer for answer in answers.values()):
        raise typer.Exit(1)


@control.command("rate-limit")
def rate_limit(
    ctx: typer.Context,
    task: Annotated[str, typer.Argument(help="The task's name.")],
    rate: Annotated[str, typer.Argument(help="For example 10/s, 100/m; 'none' for no limit.")],
    worker: WorkerOption = None,
    timeout: TimeoutOption = DEFAULT_TIMEOUT,
    as_json: JsonOption = False,
) -> None:
    """Change a task's rate limit on the live workers, until they restart."""
    broker = broker_or_exit(ctx.obj)
    limit = None if rate.lower() == "none" else rate
    answers = run(
        _with(
            broker,
            lambda b: b.control.rate_limit(task, limit, worker=worker, timeout=timeout),
        )
    )
    _report(answers, worker, timeout, as_json)


@control.command("shutdown")
def shutdown(
    ctx: typer.Context,
    worker: WorkerOption = None,
    timeout: TimeoutOption = DEFAULT_TIMEOUT,
    as_json: JsonOption = False,
) -> None:
    """Stop the live workers (or one) gracefully; their supervisors do not replace them."""
    broker = broker_or_exit(ctx.obj)
    answers = run(_with(broker, lambda b: b.control.shutdown(worker=worker, timeout=timeout)))
    _report(answers, worker, timeout, as_json)


@control.command("cancel")
def cancel(
    ctx: typer.Context,
    task_id: Annotated[str, typer.Argument(help="The task's id.")],
) -> None:
    """Cancel a task wherever it is: queued, it will not run; running, it stops."""
    broker = broker_or_exit(ctx.obj)
    run(_with(broker, lambda b: b.control.cancel(task_id)))
    typer.echo(f"cancellation of {task_id} sent")


def events(app_spec: AppArgument, as_json: JsonOption = False) -> None:
    """Print the cluster's events as they happen (workers need --events); Ctrl-C stops."""
    broker = broker_or_exit(app_spec)

    async def follow(b: Broker) -> None:
        async with b.subscribe_events() as stream:
            async for event in stream:
                line = json.dumps(dict(event.fields), default=str) if as_json else event_line(event)
                typer.echo(line)

    with contextlib.suppress(KeyboardInterrupt):
        run(_with(broker, follow))


def top(
    app_spec: AppArgument,
    interval: Annotated[
        float, typer.Option("--interval", min=0.1, help="Seconds between refreshes.")
    ] = 1.0,
) -> None:
    """A live view of workers, queues, throughput, failures and runtimes; q quits."""
    from aq.monitor.terminal import run_top

    broker = broker_or_exit(app_spec)
    with contextlib.suppress(KeyboardInterrupt):
        run(run_top(broker, interval))

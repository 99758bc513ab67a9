"""What every ``aq`` command shares: loading the app's broker, running a
coroutine, and failing with a message that says what to change."""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
from typing import Annotated, Any, NoReturn

import typer

from aq.broker import Broker
from aq.errors import AQError, ConfigurationError

__all__ = ["AppArgument", "broker_or_exit", "fail", "load_broker", "run"]

AppArgument = Annotated[str, typer.Argument(metavar="APP", help="The broker, as MODULE:ATTRIBUTE.")]


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
    except SyntaxError as exc:  # the file and line say where to look; no traceback needed
        where = f"{exc.filename}, line {exc.lineno}" if exc.filename else "unknown file"
        raise ConfigurationError(
            f"cannot import module {module_name!r}: {exc.msg} ({where})"
        ) from exc
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigurationError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(obj, Broker):
        raise ConfigurationError(f"{spec} is a {type(obj).__name__}, not an aq.Broker")
    return obj


def fail(exc: AQError) -> NoReturn:
    """Print ``exc`` as aq's error and exit with status 2."""
    typer.secho(f"aq: error: {exc}", err=True, fg=typer.colors.RED)
    raise typer.Exit(2)


def broker_or_exit(spec: str) -> Broker:
    """The broker ``spec`` names, or exit saying why it cannot be loaded."""
    try:
        return load_broker(spec)
    except AQError as exc:
        fail(exc)


def run(coro: Any) -> Any:
    """Run ``coro`` to its end; an aq error exits with its message."""
    try:
        return asyncio.run(coro)
    except AQError as exc:
        fail(exc)

"""``aq dashboard APP``: the dashboard served on its own, by uvicorn.

Everything that can be wrong is found before the server starts, each with a
message that says what to change (exit status 2): a missing extra, a host
that is not loopback while no authentication is set, a port that is taken,
bad credentials in the environment.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
from typing import TYPE_CHECKING, Annotated

import typer

from aq.broker import Broker
from aq.clikit import AppArgument, broker_or_exit, fail
from aq.errors import AQError, ConfigurationError
from aq.logs import configure, event
from aq.monitor.http import bind
from aq.web import dashboard
from aq.web.security import ENV_BASIC, ENV_TOKEN, Auth, is_loopback

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = ["dashboard_command"]

log = logging.getLogger("aq.dashboard")


def dashboard_command(
    app_spec: AppArgument,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (loopback unless auth is set).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535)] = 8080,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Hide and refuse every action.")
    ] = False,
    history: Annotated[
        int, typer.Option("--history", min=1, help="How many of the newest tasks to remember.")
    ] = 10_000,
    log_level: Annotated[str, typer.Option("--log-level")] = "INFO",
) -> None:
    """Serve the web dashboard: workers, queues, tasks, dead letters and schedules, live.

    Bound to anything but loopback it needs authentication: set AQ_DASHBOARD_TOKEN
    (a token to sign in with) or AQ_DASHBOARD_BASIC_AUTH=user:password.
    """
    configure(log_level)
    try:
        auth = Auth.from_env()
        check_exposure(host, auth)
        importlib.import_module("aq.web.app")  # the extra is installed
    except AQError as exc:
        fail(exc)
    except ImportError as exc:
        needs = f"the dashboard needs {exc.name}: pip install 'aq-tasks[dashboard]'"
        fail(ConfigurationError(needs))
    broker = broker_or_exit(app_spec)
    app = dashboard(broker, auth=auth, read_only=read_only, history=history)
    try:
        asyncio.run(_serve(app, broker, host, port))
    except AQError as exc:
        fail(exc)
    except KeyboardInterrupt:
        pass


def check_exposure(host: str, auth: Auth) -> None:
    """Refuse to listen beyond loopback without authentication."""
    if not auth.enabled and not is_loopback(host):
        raise ConfigurationError(
            f"--host {host}: the dashboard would answer beyond this machine with no "
            f"authentication; set {ENV_TOKEN} (at least 16 characters) or {ENV_BASIC}="
            "user:password, or listen on 127.0.0.1"
        )


async def _serve(app: Starlette, broker: Broker, host: str, port: int) -> None:
    import uvicorn

    sock = bind(host, port, option="--port")
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    async with broker:
        bound = sock.getsockname()
        event(
            log,
            logging.INFO,
            "dashboard.serving",
            url=f"http://{_url_host(bound[0])}:{bound[1]}/",
            pid=os.getpid(),
        )
        await server.serve(sockets=[sock])


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host

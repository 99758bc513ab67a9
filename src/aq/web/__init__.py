"""The web dashboard: ``aq dashboard APP`` or ``app.mount("/aq", aq.dashboard(broker))``.

Needs the ``dashboard`` extra (``pip install 'aq-tasks[dashboard]'``: Starlette
and uvicorn). :mod:`aq.web.board` and :mod:`aq.web.history` hold what it knows,
:mod:`aq.web.collect` keeps that current, :mod:`aq.web.app` serves it,
:mod:`aq.web.security` decides who may see and change what, and
:mod:`aq.web.serve` runs it on its own. docs/dashboard.md shows every page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aq.errors import ConfigurationError
from aq.web.security import Auth

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from aq.broker import Broker

__all__ = ["Auth", "dashboard"]


def dashboard(
    broker: Broker,
    *,
    auth: Auth | None = None,
    read_only: bool = False,
    history: int = 10_000,
    allow_anonymous: bool = False,
) -> Starlette:
    """The dashboard for ``broker``, as an ASGI application to serve or mount.

    Args:
        auth: who may see it; by default a token (``AQ_DASHBOARD_TOKEN``) or
            basic credentials (``AQ_DASHBOARD_BASIC_AUTH=user:password``) from
            the environment. Without either it answers only on loopback.
        read_only: hide and refuse every action.
        history: how many of the newest tasks it remembers (older ones are
            looked up by id through the store).
        allow_anonymous: answer without authentication on any address, for an
            application that checks who asks before the mount.

    Raises:
        aq.ConfigurationError: the dashboard extra is not installed, or an
            option is wrong.
    """
    try:
        from aq.web.app import create_app
    except ImportError as exc:  # pragma: no cover - the test environment has the extra
        raise ConfigurationError(
            f"the dashboard needs {exc.name}: pip install 'aq-tasks[dashboard]'"
        ) from exc
    if history < 1:
        raise ConfigurationError(f"history={history}: the dashboard must remember at least 1 task")
    return create_app(
        broker, auth=auth, read_only=read_only, history=history, allow_anonymous=allow_anonymous
    )

"""An app whose second start-up hook fails: ``aq worker
tests.apps.failing_hook:broker`` exits with status 4, naming it, after undoing
the first (tests/test_cli_hooks.py)."""

from __future__ import annotations

import sys

import aq

broker = aq.Broker("memory://")


@broker.on_startup
async def open_cache() -> None:
    """Succeeds; its shutdown runs when the next hook fails."""


@broker.on_shutdown
async def close_cache() -> None:
    """Says it ran, for the test to see."""
    print("close_cache ran", file=sys.stderr, flush=True)


@broker.on_startup
async def open_database() -> None:
    """Fails, as a hook that cannot reach its database does."""
    raise ConnectionRefusedError("db.internal:5432 refused the connection")

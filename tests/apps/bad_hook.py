"""An app whose start-up hook is not ``async``: refused at import, so ``aq
worker tests.apps.bad_hook:broker`` exits with status 2 saying what to write."""

from __future__ import annotations

import aq

broker = aq.Broker("memory://")


@broker.on_startup  # type: ignore[type-var]  # what the test is about
def connect() -> None:
    """Not async."""

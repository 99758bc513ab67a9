"""An app with start-up hooks for ``aq worker`` (tests/test_cli_hooks.py), served
over the network broker ``AQ_BROKER_URL`` names: it opens a pool-like resource
and sets a greeting on its state, which its task sends back."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import aq

broker = aq.Broker()


class Pool:
    """Stands for a database pool."""

    def __init__(self, pid: int) -> None:
        self.pid = pid


@broker.resource
async def pool() -> AsyncIterator[Pool]:
    """Open the pool of this worker process."""
    yield Pool(os.getpid())


@broker.on_startup
async def greet(state: aq.State) -> None:
    """Set what every task of this process reads."""
    state.greeting = "hello from the start-up hook"


@broker.task(name="hooks.state")
async def state() -> list[object]:
    """The greeting on the state, and the pid of the pool's process."""
    return [aq.context().state.greeting, pool.get().pid]

"""Driving ``aq top``: a full-screen view that refreshes in place and quits on q.

:func:`run_top` reads the event stream into a :class:`~aq.monitor.top.TopState`,
asks the workers for their stats every few seconds (so workers show before
their first heartbeat, and with events off), polls the queue counts every
``interval`` seconds, and redraws. Standard input is read key by key (when it
is a terminal): q quits, as Ctrl-C does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import termios
import time
import tty
from collections.abc import Iterator

from rich.console import Console
from rich.live import Live

from aq.broker import Broker
from aq.errors import AQError
from aq.monitor.top import TopState
from aq.transport.kit import url_title

__all__ = ["run_top"]

#: Seconds between asking the workers for their stats.
_ASK_EVERY = 3.0


async def run_top(broker: Broker, interval: float) -> None:
    """Show the live view until q or Ctrl-C."""
    state = TopState(url_title(broker.url))
    quit_now = asyncio.Event()
    async with broker, broker.subscribe_events() as stream:

        async def read_events() -> None:
            async for event in stream:
                state.feed(event)

        async def ask_workers() -> None:
            while True:
                with contextlib.suppress(AQError):
                    answers = await broker.inspect.stats(timeout=1.0)
                    for worker_id, stats in answers.items():
                        state.describe_worker(worker_id, stats, time.time())
                await asyncio.sleep(_ASK_EVERY)

        reader = asyncio.create_task(read_events())
        asker = asyncio.create_task(ask_workers())
        console = Console()
        with _keys(quit_now), Live(console=console, screen=True, auto_refresh=False) as live:
            try:
                while not quit_now.is_set():
                    with contextlib.suppress(AQError):
                        state.queues([await broker.admin.stats(q) for q in _queues(broker, state)])
                    live.update(state.render(), refresh=True)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(interval):
                            await quit_now.wait()
            finally:
                reader.cancel()
                asker.cancel()
                await asyncio.gather(reader, asker, return_exceptions=True)


def _queues(broker: Broker, state: TopState) -> list[str]:
    """The app's queues and those seen in events."""
    return list(dict.fromkeys([*broker.queues, *state.seen_queues()]))


@contextlib.contextmanager
def _keys(quit_now: asyncio.Event) -> Iterator[None]:
    """Read standard input key by key while in the block; q sets ``quit_now``."""
    stdin = sys.stdin
    if not stdin.isatty():
        yield
        return
    fd = stdin.fileno()
    saved = termios.tcgetattr(fd)
    loop = asyncio.get_running_loop()

    def on_key() -> None:
        keys = os.read(fd, 32)
        if any(key in keys for key in (b"q", b"Q", b"\x03")):
            quit_now.set()

    tty.setcbreak(fd)
    loop.add_reader(fd, on_key)
    try:
        yield
    finally:
        loop.remove_reader(fd)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)

"""An app whose worker processes a test steers with files in the directory that
``AQ_TEST_STEER_DIR`` names:

* ``exit`` holds an exit status: a process started while it exists exits with
  it as it imports the app (3 as after ``aq control shutdown``, 4 as after a
  failed start-up hook);
* while ``gated`` exists, a process's start-up hook waits for ``go-PID`` (its
  own pid) or ``open``, and then fails if ``fail`` exists;
* while ``hold-stop`` exists, a process's shutdown hook waits for ``stop``.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import aq

DIR = Path(os.environ.get("AQ_TEST_STEER_DIR", "/nonexistent"))

if (DIR / "exit").exists():
    raise SystemExit(int((DIR / "exit").read_text()))

broker = aq.Broker("memory://")


async def _until(*paths: Path) -> None:
    while not any(p.exists() for p in paths):  # noqa: ASYNC110 (another process makes them)
        await asyncio.sleep(0.02)


@broker.on_startup
async def gate() -> None:
    """Wait for the test's go-ahead; fail if it says so."""
    if (DIR / "gated").exists():
        await _until(DIR / f"go-{os.getpid()}", DIR / "open")
        if (DIR / "fail").exists():
            raise RuntimeError("the test failed this start-up")


@broker.on_shutdown
async def hold() -> None:
    """Keep stopping until the test lets go."""
    if (DIR / "hold-stop").exists():
        await _until(DIR / "stop")

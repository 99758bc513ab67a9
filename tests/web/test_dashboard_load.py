"""The dashboard under load: 5,000 events a second for 30 seconds, with a page
open on the live view. ``aq dashboard`` runs in its own process on Redis, so
its resident memory can be read while it works; the events are written to the
broker's event stream directly, as workers would send them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from playwright.async_api import Browser, expect

import aq
from aq.monitor.wire import encode_events
from tests.conftest import _delete_prefix, broker_url
from tests.web.conftest import PageErrors

pytestmark = [pytest.mark.timeout(150), pytest.mark.slow]

RATE = 5000  # events a second
SECONDS = 30
BATCH = 200  # events in a batch, as workers batch them
HISTORY = 10_000
AQ = [sys.executable, "-m", "aq"]


@contextlib.contextmanager
def dashboard_process(url: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``aq dashboard`` on ``url`` on a free port: the process and its base URL."""
    env = os.environ | {"AQ_BROKER_URL": url}
    process = subprocess.Popen(
        [*AQ, "dashboard", "tests.apps.monitored:broker", "--port", "0", "--history", str(HISTORY)],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    lines: list[str] = []
    serving = threading.Event()

    def read_log() -> None:  # drained to the end, so the pipe never fills
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            if "dashboard.serving" in line:
                serving.set()

    reader = threading.Thread(target=read_log, daemon=True)
    reader.start()
    try:
        assert serving.wait(20), f"aq dashboard did not start: {''.join(lines)}"
        found = re.search(r"url=(http://\S+?)/?(\s|$)", lines[-1])
        assert found, lines[-1]
        yield process, found.group(1)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)
        reader.join(timeout=5)
        assert process.stderr is not None
        process.stderr.close()


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture
async def url() -> AsyncIterator[str]:
    address = broker_url("redis")
    yield address
    await _delete_prefix(address)


def _task_events(n: int, now: float) -> list[dict[str, object]]:
    """The two events of task ``n``'s life: received, then succeeded."""
    task_id = f"load-{n:08d}"
    common: dict[str, object] = {"task_id": task_id, "name": "tests.apps.monitored.work"}
    common |= {"queue": "default", "attempt": 1, "worker": "load.1", "host": "load"}
    return [
        {"type": "task-received", "ts": now} | common,
        {"type": "task-succeeded", "ts": now, "runtime": 0.001} | common,
    ]


async def test_5000_events_a_second_for_30_seconds_with_a_page_open(
    url: str, browser: Browser
) -> None:
    producer = aq.Broker(url)
    tasks = RATE * SECONDS // 2
    with dashboard_process(url) as (process, base):
        async with producer, httpx.AsyncClient(base_url=base) as http:
            page = await browser.new_page()
            errors = PageErrors(page)
            await page.goto(base + "/tasks")
            await expect(page.locator("#live")).to_have_class("live on")
            samples: list[tuple[float, int]] = []
            loop = asyncio.get_running_loop()
            began = loop.time()
            sent = 0
            while sent < tasks:  # a batch every BATCH / RATE seconds, on schedule
                events: list[dict[str, object]] = []
                now = time.time()
                for n in range(sent, min(tasks, sent + BATCH // 2)):
                    events += _task_events(n, now)
                sent += len(events) // 2
                await producer.transport.publish_events(encode_events(events, producer.serializer))
                elapsed = loop.time() - began
                if not samples or elapsed - samples[-1][0] >= 1.0:
                    samples.append((elapsed, rss_kib(process.pid)))
                due = began + sent * 2 / RATE
                await asyncio.sleep(max(0.0, due - loop.time()))
            took = loop.time() - began
            async with asyncio.timeout(30):  # every event is taken in
                while (await http.get("/api/overview")).json()["events"] < tasks * 2:  # noqa: ASYNC110
                    await asyncio.sleep(0.2)  # another process: polled
            overview = (await http.get("/api/overview")).json()
            newest = f"load-{tasks - 1:08d}"
            await expect(page.locator("#count")).to_have_text(
                f"{HISTORY:,} matching of those remembered"
            )
            await expect(page.locator("tbody tr").first).to_have_attribute("data-id", newest)
            assert errors.seen == []
    assert took < SECONDS * 1.2, f"the load ran slow: {took:.1f} s"
    assert overview["events"] == tasks * 2  # nothing lost on the way in
    assert overview["remembered"] == HISTORY  # the newest N kept...
    assert overview["forgotten"] == tasks - HISTORY  # ...and the rest let go
    assert sum(p[1] for p in overview["timeline"]) == tasks
    # Flat memory: once the history is full (HISTORY tasks at 2,500 a second take
    # 4 s), resident memory stays where it is for the rest of the run.
    settled = [kib for t, kib in samples if t >= 8.0]
    print(f"\nRSS KiB over the run: {[kib for _, kib in samples]}")
    assert max(settled) - settled[0] < 8 * 1024, samples

"""The dashboard in a real browser (Debian's Chromium, driven by Playwright), on
real brokers: every page loads without a script error, a task shows up live,
a dead letter is requeued by a click and then succeeds, and actions without
the token are refused."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

import aq
from aq.testing import running_worker
from aq.web import Auth
from tests.conftest import _delete_prefix, broker_url, delete_amqp_namespace
from tests.web.conftest import PageErrors, serving

pytestmark = [pytest.mark.timeout(60), pytest.mark.slow]

TOKEN = "browser-test-token-0123456789"
#: Set to a directory to keep the screenshots the page test takes (docs/images).
SCREENSHOTS = os.environ.get("AQ_DASHBOARD_SCREENSHOTS")


@pytest.fixture(params=["redis", "amqp"])
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[aq.Broker]:
    """Each broker, for what goes through the broker (tasks, dead letters)."""
    async for made in _broker(str(request.param)):
        yield made


@pytest.fixture
async def redis_broker() -> AsyncIterator[aq.Broker]:
    """Redis alone, for what is the dashboard's own (pages, refusals)."""
    async for made in _broker("redis"):
        yield made


async def _broker(kind: str) -> AsyncIterator[aq.Broker]:
    store = broker_url("redis") if kind == "amqp" else None
    b = aq.Broker(broker_url(kind), store=store, result_ttl=60, events=True)
    try:
        async with b:
            yield b
    finally:
        if kind == "amqp":
            await delete_amqp_namespace(b.url)
        for url in (b.url, store):
            if url is not None and url.startswith("redis"):
                await _delete_prefix(url)


async def _live(page: Page) -> None:
    """Wait until the page's live stream delivered its first push."""
    await expect(page.locator("#live")).to_have_class("live on")


async def test_every_page_loads_and_draws_its_content(
    broker: aq.Broker, browser: Browser, tmp_path: Path
) -> None:
    @broker.task(event_data=True)
    async def add(x: int, y: int) -> int:
        return x + y

    broker.schedule(add, aq.every(minutes=5), name="add-often", args=(1, 2))
    app = aq.dashboard(broker, auth=Auth())
    async with serving(app) as base, running_worker(broker, events=True) as worker:
        handle = await add.kiq(2, 3)
        assert await handle.result(timeout=5) == 5
        page = await browser.new_page(viewport={"width": 1366, "height": 850})
        errors = PageErrors(page)
        checks = {
            "/": "Throughput",
            "/workers": worker.id,
            "/tasks": handle.id,
            f"/tasks/{handle.id}": "Attempts",
            "/queues": "default",
            "/dead": "No dead letters in this queue.",
            "/schedules": "add-often",
        }
        shots = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
        for path, text in checks.items():
            await page.goto(base + path)
            await _live(page)
            await expect(page.locator("#content")).to_contain_text(text)
            name = path.strip("/").split("/")[0] or "overview"
            name = "task" if path.startswith("/tasks/") else name
            await page.screenshot(path=shots / f"dashboard-{name}.png", full_page=True)
        assert errors.seen == []


async def test_a_task_appears_live_without_a_reload(broker: aq.Broker, browser: Browser) -> None:
    @broker.task
    async def echo(x: int) -> int:
        return x

    app = aq.dashboard(broker, auth=Auth())
    async with serving(app) as base, running_worker(broker, events=True):
        page = await browser.new_page()
        errors = PageErrors(page)
        await page.goto(base + "/tasks")
        await _live(page)
        loads = 0
        page.on("load", lambda _: _count())

        def _count() -> None:
            nonlocal loads
            loads += 1

        handle = await echo.kiq(1)
        await handle.result(timeout=5)
        row = page.locator(f"tr[data-id='{handle.id}']")
        await expect(row.locator(".state")).to_have_text("succeeded")
        assert loads == 0
        await page.goto(base + "/")  # the overview's latest tasks are live too
        await _live(page)
        second = await echo.kiq(2)
        await second.result(timeout=5)
        await expect(page.locator(f"tr[data-id='{second.id}'] .state")).to_have_text("succeeded")
        assert errors.seen == []


async def test_a_dead_letter_requeued_by_a_click_then_succeeds(
    broker: aq.Broker, browser: Browser
) -> None:
    fixed = asyncio.Event()

    @broker.task(retries=0)
    async def flaky() -> str:
        if not fixed.is_set():
            raise RuntimeError("the bug is not fixed yet")
        return "fine"

    app = aq.dashboard(broker, auth=Auth())
    async with serving(app) as base, running_worker(broker, events=True):
        handle = await flaky.kiq()
        with pytest.raises(aq.TaskFailed):
            await handle.result(timeout=5)
        page = await browser.new_page()
        errors = PageErrors(page)
        await page.goto(base + "/dead")
        row = page.locator("tr", has=page.locator(f"a[title='{handle.id}']"))
        await expect(row).to_contain_text("the bug is not fixed yet")
        fixed.set()
        await row.get_by_role("button", name="Requeue").click()
        await expect(page.locator("#toast")).to_contain_text("sent back")
        await expect(page.locator("#content")).to_contain_text("No dead letters in this queue.")
        await page.goto(f"{base}/tasks/{handle.id}")
        await expect(page.locator("dl.facts .state")).to_have_text("succeeded")
        assert await broker.get_result(handle.id) == "fine"
        assert errors.seen == []


async def test_without_the_token_nothing_is_shown_and_no_action_taken(
    redis_broker: aq.Broker, browser: Browser
) -> None:
    broker = redis_broker

    @broker.task
    async def work() -> None:
        pass

    app = aq.dashboard(broker, auth=Auth(token=TOKEN))
    async with serving(app) as base:
        await work.kiq()
        page = await browser.new_page()
        await page.goto(base + "/queues")
        assert page.url == base + "/login"
        refused = await page.evaluate(
            """async () => (await fetch('/api/actions/purge', {method: 'POST',
                headers: {'Content-Type': 'application/json'},
                body: JSON.stringify({queue: 'default'})})).status"""
        )
        assert refused == 401
        await page.fill("input[name=token]", "not-the-right-token")
        await page.click("button[type=submit]")
        await expect(page.locator(".error")).to_have_text("That token is not right.")
        await page.fill("input[name=token]", TOKEN)
        await page.click("button[type=submit]")
        await expect(page.locator("h1")).to_have_text("Overview")
        # Signed in, an action still needs the page's anti-forgery token.
        forged = await page.evaluate(
            """async () => (await fetch('/api/actions/purge', {method: 'POST',
                headers: {'Content-Type': 'application/json'},
                body: JSON.stringify({queue: 'default'})})).status"""
        )
        assert forged == 403
        assert (await broker.admin.stats("default")).ready == 1
        await page.goto(base + "/queues")
        await _live(page)
        ready = page.locator("#content tbody tr", has_text="default").locator("td").nth(1)
        await expect(ready).to_have_text("1")  # the counts are read every 2 s
        await page.get_by_role("button", name="Purge").click()
        await expect(page.locator("#confirm-text")).to_contain_text("Delete the 1 ready")
        await page.click("#confirm-ok")
        await expect(page.locator("#toast")).to_contain_text("1 message(s) deleted from default")
        assert (await broker.admin.stats("default")).ready == 0


async def test_a_read_only_dashboard_shows_no_action(
    redis_broker: aq.Broker, browser: Browser
) -> None:
    broker = redis_broker

    @broker.task(retries=0)
    async def broken() -> None:
        raise RuntimeError("broken")

    app = aq.dashboard(broker, auth=Auth(), read_only=True)
    async with serving(app) as base, running_worker(broker, events=True) as worker:
        handle = await broken.kiq()
        with pytest.raises(aq.TaskFailed):
            await handle.result(timeout=5)
        page = await browser.new_page()
        for path, text in (("/dead", "broken"), ("/workers", worker.id), ("/queues", "default")):
            await page.goto(base + path)
            await _live(page)
            await expect(page.locator("#content")).to_contain_text(text)
            assert await page.locator("#content button").count() == 0
        await expect(page.locator(".badge")).to_have_text("read-only")
        # A task older than the history is looked up by its id through the store.
        await page.goto(base + "/tasks?q=older-than-memory")
        await page.get_by_role("link", name="look older-than-memory up by its id").click()
        await expect(page.locator("dl.facts .state")).to_have_text("unknown")

"""Take the screenshots of docs/dashboard.md: a small shop's tasks run for a few
minutes on the in-memory broker (two workers, a scheduler, some failures, a
workflow), and every page is photographed in light and dark mode.

    .venv/bin/python scripts/dashboard_screenshots.py [--minutes 3] [--out docs/images]

Needs Debian's chromium (``make test`` installs it) and the dev extra (playwright).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
from pathlib import Path

from playwright.async_api import async_playwright

import aq
from aq.testing import running_worker
from aq.web import Auth
from tests.web.conftest import CHROMIUM, CHROMIUM_ARGS, serving

broker = aq.Broker("memory://", result_ttl=3600, events=True)


@broker.task(event_data=True, name="shop.send_email")
async def send_email(to: str, subject: str) -> str:
    await asyncio.sleep(random.uniform(0.01, 0.08))
    return f"sent to {to}"


@broker.task(name="shop.resize_image", max_concurrency=20)
async def resize_image(path: str, width: int) -> dict[str, int]:
    await asyncio.sleep(random.uniform(0.05, 0.3))
    return {"width": width, "height": width * 3 // 4}


@broker.task(name="shop.charge_card", retries=2, retry_backoff=0.5, event_data=True)
async def charge_card(order: int, cents: int) -> str:
    await asyncio.sleep(random.uniform(0.02, 0.1))
    if order % 23 == 0:
        raise RuntimeError(f"card declined for order {order}")
    return f"charged {cents}"


@broker.task(name="shop.nightly_report")
async def nightly_report() -> int:
    await asyncio.sleep(0.5)
    return 42


broker.schedule(nightly_report, aq.cron("0 3 * * *"), name="nightly-report")
broker.schedule(send_email, aq.every(minutes=5), name="digest", args=("ops@shop.example", "Digest"))


async def traffic(stop: asyncio.Event) -> None:
    order = 1000
    while not stop.is_set():
        burst = random.randint(5, 40)
        for _ in range(burst):
            order += 1
            await charge_card.kiq(order, random.randint(500, 9000))
            await send_email.kiq(f"customer{order}@example.com", f"Order {order}")
            if order % 3 == 0:
                await resize_image.kiq(f"/img/{order}.jpg", 640)
        if order % 50 < 10:
            await aq.chain(charge_card.s(order, 100), send_email.si("x@example.com", "Paid")).kiq()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), random.uniform(0.2, 1.5))


async def main(minutes: float, out: Path) -> None:
    app = aq.dashboard(broker, auth=Auth())
    async with (
        broker,
        serving(app) as base,
        running_worker(broker, events=True, concurrency=200),
        running_worker(broker, events=True, concurrency=50, scheduler=True),
    ):
        await broker.schedules.pause("digest")
        stop = asyncio.Event()
        sender = asyncio.create_task(traffic(stop))
        await asyncio.sleep(minutes * 60)
        slow = await nightly_report.kiq()
        stop.set()
        await sender
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for scheme in ("light", "dark"):
                page = await browser.new_page(
                    viewport={"width": 1440, "height": 900}, color_scheme=scheme
                )
                failed, _ = app.state.dashboard.board.history.search(state="failed")
                task = failed[0].id if failed else slow.id
                for name, path in (
                    ("overview", "/"),
                    ("workers", "/workers"),
                    ("tasks", "/tasks"),
                    ("task", f"/tasks/{task}"),
                    ("queues", "/queues"),
                    ("dead", "/dead"),
                    ("schedules", "/schedules"),
                ):
                    await page.goto(base + path)
                    await page.wait_for_timeout(2500)
                    shot = out / f"dashboard-{name}-{scheme}.png"
                    await page.screenshot(path=shot)
                    print(shot)
            await browser.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(args.minutes, args.out))

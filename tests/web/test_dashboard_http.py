"""The dashboard over HTTP: who may see it, which requests may change things,
what the API answers, and the actions' effects (on the in-memory broker; the
browser tests run on Redis and RabbitMQ)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI

import aq
from aq.testing import running_worker
from aq.web import Auth
from aq.web.security import CSRF_HEADER, SESSION_COOKIE
from tests.web.conftest import serving

pytestmark = pytest.mark.timeout(30)

TOKEN = "a-token-that-is-long-enough"


@pytest.fixture
async def broker() -> AsyncIterator[aq.Broker]:
    b = aq.Broker("memory://", result_ttl=60, events=True)
    async with b:
        yield b


def client(app: object, base: str = "http://127.0.0.1:8080") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url=base)


def csrf_of(app: object) -> str:
    return str(app.state.dashboard.auth.csrf())  # type: ignore[attr-defined]


async def test_every_page_is_served_with_a_strict_content_security_policy(
    broker: aq.Broker,
) -> None:
    app = aq.dashboard(broker, auth=Auth())
    async with client(app) as http:
        for path in ("/", "/workers", "/tasks", "/tasks/abc", "/queues", "/dead", "/schedules"):
            response = await http.get(path)
            assert response.status_code == 200, path
            policy = response.headers["content-security-policy"]
            assert "default-src 'self'" in policy
            assert "script-src 'self'" in policy
            assert f"data-csrf='{csrf_of(app)}'" in response.text
            assert "http://" not in response.text  # nothing from another host
            assert "https://" not in response.text
        for static in ("/static/aq.js", "/static/aq.css", "/static/theme.js"):
            assert (await http.get(static)).status_code == 200


async def test_a_task_id_in_the_page_is_escaped(broker: aq.Broker) -> None:
    app = aq.dashboard(broker, auth=Auth())
    async with client(app) as http:
        response = await http.get("/tasks/%3Cimg%20src%3Dx%20onerror%3D'alert(1)'%3E")
    assert response.status_code == 200
    assert "<img" not in response.text
    assert "data-arg='&lt;img src=x onerror=&#x27;alert(1)&#x27;&gt;'" in response.text


async def test_without_auth_only_loopback_requests_are_answered(broker: aq.Broker) -> None:
    app = aq.dashboard(broker, auth=Auth())
    async with client(app, "http://10.1.2.3:8080") as http:
        refused = await http.get("/")
        api = await http.get("/api/overview")
    assert refused.status_code == 403
    assert "AQ_DASHBOARD_TOKEN" in refused.text
    assert api.status_code == 403
    # A loopback listener reached through another host name (DNS rebinding) is refused too.
    async with client(app, "http://127.0.0.1:8080") as http:
        rebound = await http.get("/", headers={"host": "evil.example:8080"})
    assert rebound.status_code == 403
    # Through a reverse proxy on this machine, a request may come from anywhere.
    async with client(app, "http://127.0.0.1:8080") as http:
        proxied = await http.get("/", headers={"x-forwarded-for": "203.0.113.7"})
    assert proxied.status_code == 403
    opened = aq.dashboard(broker, auth=Auth(), allow_anonymous=True)
    async with client(opened, "http://10.1.2.3:8080") as http:
        assert (await http.get("/")).status_code == 200


async def test_a_token_must_be_given_to_see_anything(broker: aq.Broker) -> None:
    app = aq.dashboard(broker, auth=Auth(token=TOKEN))
    async with client(app, "http://10.1.2.3:8080") as http:
        page = await http.get("/workers")
        assert page.status_code == 303
        assert page.headers["location"] == "/login"
        assert (await http.get("/api/overview")).status_code == 401
        login = await http.get("/login")
        assert login.status_code == 200
        assert "type='password'" in login.text
        wrong = await http.post("/login", data={"token": "not-the-token-at-all"})
        assert wrong.status_code == 401
        assert SESSION_COOKIE not in wrong.cookies
        right = await http.post("/login", data={"token": TOKEN})
        assert right.status_code == 303
        cookie = right.cookies[SESSION_COOKIE]
        assert TOKEN not in cookie
        http.cookies.set(SESSION_COOKIE, cookie)
        page = await http.get("/workers")
        assert page.status_code == 200
        assert "Sign out" in page.text
        assert (await http.get("/api/overview")).status_code == 200
        out = await http.post("/logout")
        assert out.status_code == 303
        assert out.headers["location"] == "/login"
        assert SESSION_COOKIE in out.headers["set-cookie"]
        assert "Max-Age=0" in out.headers["set-cookie"] or "expires=" in out.headers["set-cookie"]
    async with client(app, "http://10.1.2.3:8080") as http:
        bearer = await http.get("/api/overview", headers={"authorization": f"Bearer {TOKEN}"})
        assert bearer.status_code == 200
        http.cookies.set(SESSION_COOKIE, "0" * 64)
        assert (await http.get("/api/overview")).status_code == 401


async def test_basic_auth_asks_the_browser_for_credentials(broker: aq.Broker) -> None:
    app = aq.dashboard(broker, auth=Auth(basic=("ops", "s3cret-enough")))
    good = "Basic " + base64.b64encode(b"ops:s3cret-enough").decode()
    bad = "Basic " + base64.b64encode(b"ops:wrong-password").decode()
    async with client(app, "http://10.1.2.3:8080") as http:
        asked = await http.get("/")
        assert asked.status_code == 401
        assert asked.headers["www-authenticate"].startswith("Basic")
        assert (await http.get("/", headers={"authorization": bad})).status_code == 401
        assert (await http.get("/", headers={"authorization": good})).status_code == 200


async def test_an_action_needs_the_anti_forgery_token_and_our_origin(broker: aq.Broker) -> None:
    app = aq.dashboard(broker, auth=Auth(token=TOKEN))
    bearer = {"authorization": f"Bearer {TOKEN}"}
    body = orjson.dumps({"queue": "default"})
    async with client(app) as http:
        bare = await http.post("/api/actions/purge", content=body, headers=bearer)
        assert bare.status_code == 403
        assert "anti-forgery" in bare.json()["error"]
        wrong = await http.post(
            "/api/actions/purge", content=body, headers=bearer | {CSRF_HEADER: "0" * 64}
        )
        assert wrong.status_code == 403
        foreign = await http.post(
            "/api/actions/purge",
            content=body,
            headers=bearer | {CSRF_HEADER: csrf_of(app), "origin": "https://evil.example"},
        )
        assert foreign.status_code == 403
        assert "cross-site" in foreign.json()["error"]
        unauthenticated = await http.post(
            "/api/actions/purge", content=body, headers={CSRF_HEADER: csrf_of(app)}
        )
        assert unauthenticated.status_code == 401
        ok = await http.post(
            "/api/actions/purge",
            content=body,
            headers=bearer | {CSRF_HEADER: csrf_of(app), "origin": "http://127.0.0.1:8080"},
        )
        assert ok.status_code == 200, ok.text
        assert ok.json() == {"ok": True, "message": "0 message(s) deleted from default"}
        assert (await http.get("/api/actions/purge", headers=bearer)).status_code == 405


async def test_a_read_only_dashboard_refuses_every_action(broker: aq.Broker) -> None:
    app = aq.dashboard(broker, auth=Auth(), read_only=True)
    async with client(app) as http:
        page = await http.get("/dead")
        assert "data-read-only='1'" in page.text
        refused = await http.post(
            "/api/actions/purge", json={"queue": "default"}, headers={CSRF_HEADER: csrf_of(app)}
        )
    assert refused.status_code == 403
    assert refused.json()["error"] == "this dashboard is read-only"


async def test_bad_action_requests_say_what_is_wrong(broker: aq.Broker) -> None:
    app = aq.dashboard(broker, auth=Auth())
    headers = {CSRF_HEADER: csrf_of(app)}
    async with client(app) as http:

        async def post(action: str, body: bytes) -> httpx.Response:
            return await http.post(f"/api/actions/{action}", content=body, headers=headers)

        assert (await post("explode", b"{}")).status_code == 404
        assert (await post("purge", b"[1, 2")).status_code == 400
        assert (await post("purge", b"[]")).json()["error"] == "the body must be a JSON object"
        assert (await post("purge", b"x" * 70_000)).status_code == 400
        unknown = await post("purge", orjson.dumps({"queue": "nope"}))
        assert unknown.status_code == 400
        assert unknown.json()["error"] == "there is no queue named 'nope'"
        rate = await post("rate-limit", orjson.dumps({"task": "t", "rate": "fast"}))
        assert rate.status_code == 400
        retry = await post("retry", orjson.dumps({"task_id": "never-seen"}))
        assert retry.status_code == 400
        assert "is not among the oldest 500 dead letters of" in retry.json()["error"]
        pause = await post("pause", orjson.dumps({"name": "nothing"}))
        assert pause.json()["error"] == "there is no schedule named 'nothing'"
        none = await post("requeue", orjson.dumps({"queue": "default", "ids": []}))
        assert none.json()["error"] == "select at least one dead letter"


async def test_tasks_are_found_by_id_name_and_state(broker: aq.Broker) -> None:
    @broker.task(event_data=True)
    async def add(x: int, y: int) -> int:
        return x + y

    @broker.task(retries=0)
    async def boom() -> None:
        raise ValueError("no")

    app = aq.dashboard(broker, auth=Auth())
    board = app.state.dashboard.board
    async with client(app) as http, running_worker(broker, events=True):
        await http.get("/api/overview")  # starts the collector
        added = [await add.kiq(i, 1) for i in range(3)]
        failed = await boom.kiq()
        for handle in added:
            await handle.result(timeout=5)
        with pytest.raises(aq.TaskFailed):
            await failed.result(timeout=5)
        async with asyncio.timeout(5):
            while board.history.get(failed.id) is None or board.history.get(
                failed.id
            ).state not in ("failed", "dead-lettered"):
                await board.next_tick()
            while any(board.history.get(h.id) is None for h in added):
                await board.next_tick()
        found = (await http.get("/api/tasks", params={"q": added[0].id})).json()
        assert [t["id"] for t in found["tasks"]] == [added[0].id]
        by_state = (await http.get("/api/tasks", params={"state": "succeeded"})).json()
        assert {t["id"] for t in by_state["tasks"]} == {h.id for h in added}
        by_name = (await http.get("/api/tasks", params={"name": boom.name})).json()
        assert [t["id"] for t in by_name["tasks"]] == [failed.id]
        assert set(by_name["names"]) == {add.name, boom.name}
        one = (await http.get(f"/api/tasks/{added[1].id}")).json()
        assert one["task"]["args"] == [1, 1]
        assert one["task"]["result"] == 2
        assert one["outcome"] == {"kind": "result", "value": 2}
        assert one["status"]["state"] == "succeeded"
        bad = (await http.get(f"/api/tasks/{failed.id}")).json()
        assert bad["outcome"]["type"] == "ValueError"
        assert 'raise ValueError("no")' in bad["outcome"]["traceback"]
        assert bad["task"]["attempts"][0]["error"]["message"] == "no"
        letters = (await http.get("/api/dead")).json()["letters"]
        assert [letter["task_id"] for letter in letters] == [failed.id]


async def test_a_dead_lettered_task_is_retried_from_its_dead_letter(broker: aq.Broker) -> None:
    attempts: list[int] = []

    @broker.task(retries=0)
    async def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("first time")
        return "fine"

    app = aq.dashboard(broker, auth=Auth())
    async with client(app) as http, running_worker(broker, events=True):
        handle = await flaky.kiq()
        with pytest.raises(aq.TaskFailed):
            await handle.result(timeout=5)
        retried = await http.post(
            "/api/actions/retry",
            json={"task_id": handle.id},
            headers={CSRF_HEADER: csrf_of(app)},
        )
        assert retried.status_code == 200, retried.text
        assert retried.json()["message"] == f"task {handle.id} sent back to default"
        async with asyncio.timeout(5):
            while (await broker.status(handle.id)).state != "succeeded":  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert await broker.get_result(handle.id) == "fine"
        assert (await broker.admin.stats("default")).dead == 0


async def test_schedules_are_paused_and_resumed(broker: aq.Broker) -> None:
    @broker.task(schedule=aq.every(hours=1))
    async def hourly() -> None:
        pass

    app = aq.dashboard(broker, auth=Auth())
    headers = {CSRF_HEADER: csrf_of(app)}
    name = hourly.name
    async with client(app) as http:
        listed = (await http.get("/api/schedules")).json()
        assert [(s["name"], s["paused"], s["spec"]) for s in listed["schedules"]] == [
            (name, False, "every 1h")
        ]
        assert listed["store"] is True
        paused = await http.post("/api/actions/pause", json={"name": name}, headers=headers)
        assert paused.json() == {"ok": True, "message": f"schedule {name} paused"}
        shown = (await http.get("/api/schedules")).json()["schedules"]
        assert [(s["name"], s["paused"]) for s in shown] == [(name, True)]
        assert await broker.schedules.paused() == frozenset({name})
        await http.post("/api/actions/resume", json={"name": name}, headers=headers)
        shown = (await http.get("/api/schedules")).json()["schedules"]
        assert [(s["name"], s["paused"]) for s in shown] == [(name, False)]


async def test_the_live_stream_pushes_tasks_as_they_happen(broker: aq.Broker) -> None:
    @broker.task
    async def echo(x: int) -> int:
        return x

    app = aq.dashboard(broker, auth=Auth())
    async with (
        serving(app) as base,
        running_worker(broker, events=True),
        httpx.AsyncClient(base_url=base) as http,
        http.stream("GET", "/api/stream") as stream,
    ):
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.aiter_lines()
        first = await _next_tick(lines)
        assert first["changed"] == []
        handle = await echo.kiq(7)
        await handle.result(timeout=5)
        async with asyncio.timeout(10):
            while True:
                tick = await _next_tick(lines)
                states = {t["id"]: t["state"] for t in tick["changed"]}
                if states.get(handle.id) == "succeeded":
                    break
        assert tick["seq"] > first["seq"]


async def _next_tick(lines: AsyncIterator[str]) -> dict[str, Any]:
    async for line in lines:
        if line.startswith("data: "):
            data = orjson.loads(line[6:])
            assert isinstance(data, dict)
            return data
    raise AssertionError("the stream ended")


async def test_it_mounts_inside_a_fastapi_application(broker: aq.Broker) -> None:
    outer = FastAPI()

    @outer.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    outer.mount("/aq", aq.dashboard(broker, auth=Auth()))
    async with client(outer) as http:
        assert (await http.get("/hello")).json() == {"hello": "world"}
        page = await http.get("/aq/queues")
        assert page.status_code == 200
        assert "data-base='/aq'" in page.text
        assert "href='/aq/static/aq.css'" in page.text
        assert (await http.get("/aq/static/aq.js")).status_code == 200
        overview = (await http.get("/aq/api/overview")).json()
        assert overview["title"] == "memory://"


async def test_a_mounted_dashboards_loops_end_with_its_broker() -> None:
    broker = aq.Broker("memory://", result_ttl=60)
    app = aq.dashboard(broker, auth=Auth())
    collector = app.state.dashboard.collector
    async with broker, client(app) as http:
        assert (await http.get("/api/overview")).status_code == 200
        assert collector.running
    async with asyncio.timeout(5):  # each loop sees the broker gone at its next turn
        while collector.running:  # noqa: ASYNC110 - no event tells
            await asyncio.sleep(0.05)


async def test_a_workflow_step_shows_its_place_in_the_workflow(broker: aq.Broker) -> None:
    @broker.task
    async def add(x: int, y: int) -> int:
        return x + y

    @broker.task
    async def double(x: int) -> int:
        return 2 * x

    app = aq.dashboard(broker, auth=Auth())
    board = app.state.dashboard.board
    async with client(app) as http, running_worker(broker, events=True):
        await http.get("/api/overview")  # watching from here on
        handle = await aq.chain(add.s(1, 2), double.s(), double.s()).kiq()
        assert await handle.result(timeout=5) == 12
        async with asyncio.timeout(5):
            while len([r for r in board.history.newest() if r.state == "succeeded"]) < 3:
                await board.next_tick()
        steps = [r for r in board.history.newest() if r.name == double.name]
        page = (await http.get(f"/api/tasks/{steps[0].id}")).json()
    workflow = page["workflow"]
    assert page["task"]["root"] == handle.id
    assert [step["name"] for step in workflow] == [add.name, double.name, double.name]
    assert all(step["state"] == "succeeded" for step in workflow)
    assert steps[0].id in [step["id"] for step in workflow]

"""The dashboard's HTTP face: pages, a JSON API, a live stream and actions.

:func:`create_app` returns a Starlette application that can be served on its
own (``aq dashboard``) or mounted in another (``app.mount("/aq",
aq.dashboard(broker))``). Every page is the same small HTML shell
(:mod:`aq.web.pages`) that the script in ``static/aq.js`` fills from the JSON
API and keeps current from ``/api/stream``, a server-sent event stream that
pushes the board's figures and the tasks touched since the last push. Actions
are ``POST /api/actions/<name>`` with a JSON body; :class:`Guard` checks who
asks (:mod:`aq.web.security`) before any of it.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from aq.broker import Broker
from aq.errors import AQError
from aq.transport.kit import url_title
from aq.web import operations
from aq.web.board import Board
from aq.web.collect import Collector
from aq.web.pages import PAGES, login_page, page, refusal_page
from aq.web.security import (
    CSRF_HEADER,
    SESSION_COOKIE,
    SESSION_TTL,
    Auth,
    host_name,
    is_loopback,
    same_origin,
)

__all__ = ["Dashboard", "create_app"]

#: Tasks sent to a live page per push, at most (the newest of those touched).
LIVE_BATCH = 200
#: Live streams served at once, at most.
MAX_STREAMS = 64
_STATIC = Path(__file__).parent / "static"


class JSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


class Dashboard:
    """The state behind one dashboard application."""

    def __init__(
        self,
        broker: Broker,
        *,
        auth: Auth,
        read_only: bool,
        history: int,
        allow_anonymous: bool,
    ) -> None:
        self.broker = broker
        self.auth = auth
        self.read_only = read_only
        self.allow_anonymous = allow_anonymous
        self.board = Board(url_title(broker.url), history)
        self.collector = Collector(broker, self.board)
        self.streams = 0
        #: Tells this run of the dashboard from earlier ones, in stream event ids.
        self.epoch = secrets.token_hex(4)

    # -- pages --------------------------------------------------------------------------

    async def page(self, request: Request, name: str) -> Response:
        return HTMLResponse(
            page(
                name,
                base=request.scope.get("root_path", ""),
                title=self.board.title,
                csrf=self.auth.csrf(),
                read_only=self.read_only,
                arg=request.path_params.get("task_id", ""),
                signed_in=self.auth.token is not None,
            ),
            headers=_PAGE_HEADERS,
        )

    async def login(self, request: Request) -> Response:
        base = request.scope.get("root_path", "")
        if request.method == "GET":
            return HTMLResponse(login_page(base, error=""), headers=_PAGE_HEADERS)
        if not same_origin(request.headers.get("origin"), request.headers.get("host")):
            return JSON({"error": "cross-site login refused"}, status_code=403)
        try:
            body = await _body(request, 4096)
        except ValueError as exc:
            return JSON({"error": str(exc)}, status_code=413)
        offered = parse_qs(body.decode(errors="replace")).get("token", [""])[0] if body else ""
        if not self.auth.check_token(offered):
            return HTMLResponse(
                login_page(base, error="That token is not right."),
                status_code=401,
                headers=_PAGE_HEADERS,
            )
        response = RedirectResponse(f"{base}/", status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            self.auth.session(),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path=f"{base}/",
            max_age=SESSION_TTL,
        )
        return response

    async def logout(self, request: Request) -> Response:
        base = request.scope.get("root_path", "")
        if not same_origin(request.headers.get("origin"), request.headers.get("host")):
            return JSON({"error": "cross-site request refused"}, status_code=403)
        response = RedirectResponse(f"{base}/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=f"{base}/")
        return response

    # -- reads --------------------------------------------------------------------------

    async def overview(self, request: Request) -> Response:
        await self.collector.start()
        return JSON(self.board.overview())

    async def tasks(self, request: Request) -> Response:
        await self.collector.start()
        params = request.query_params
        found, total = self.board.history.search(
            text=params.get("q", ""),
            name=params.get("name", ""),
            state=params.get("state", ""),
            offset=_int(params.get("offset"), 0, 0, 10**9),
            limit=_int(params.get("limit"), 50, 1, 500),
        )
        return JSON(
            {
                "tasks": [record.summary() for record in found],
                "total": total,
                "seq": self.board.history.seq,
                "names": sorted(self.board.top.tasks),
            }
        )

    async def task(self, request: Request) -> Response:
        await self.collector.start()
        task_id = request.path_params["task_id"]
        record = self.board.history.get(task_id)
        data: dict[str, Any] = {"id": task_id, "task": record.to_json() if record else None}
        try:
            data.update(await operations.stored_task(self.broker, task_id))
        except AQError as exc:
            data["store_error"] = str(exc)
        if record is not None and record.root is not None:
            steps = self.board.history.workflow(record.root)
            data["workflow"] = [step.summary() | {"step": step.step} for step in steps]
        return JSON(data)

    async def dead(self, request: Request) -> Response:
        await self.collector.start()
        wanted = request.query_params.get("queue")
        queues = [wanted] if wanted else self.collector.queue_names()
        letters: list[dict[str, Any]] = []
        try:
            for queue in queues:
                letters.extend(await operations.dead_letters(self.broker, queue))
        except AQError as exc:
            return JSON({"error": str(exc)}, status_code=503)
        return JSON({"letters": letters, "queues": queues})

    async def schedules(self, request: Request) -> Response:
        await self.collector.start()
        try:
            return JSON(await operations.schedules(self.broker))
        except AQError as exc:
            return JSON({"error": str(exc)}, status_code=503)

    async def stream(self, request: Request) -> Response:
        await self.collector.start()
        if self.streams >= MAX_STREAMS:
            return JSON({"error": "too many live pages open"}, status_code=503)
        epoch, _, seq = (request.headers.get("last-event-id") or "").partition("-")
        # A page reconnecting to this dashboard resumes; one that was talking to an
        # earlier run of it (another epoch) starts over.
        since = _int(seq, 0, 0, self.board.history.seq) if epoch == self.epoch else 0
        return StreamingResponse(
            self._pushes(since),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def _pushes(self, since: int) -> AsyncIterator[bytes]:
        self.streams += 1
        try:
            yield b"retry: 2000\n\n"
            while True:
                data = self.board.live(since, LIVE_BATCH)
                since = data["seq"]
                head = b"id: %s-%d\nevent: tick\ndata: " % (self.epoch.encode(), since)
                yield head + orjson.dumps(data) + b"\n\n"
                await self.board.next_tick()
        finally:
            self.streams -= 1

    # -- actions ------------------------------------------------------------------------

    async def act(self, request: Request) -> Response:
        if self.read_only:
            return JSON({"error": "this dashboard is read-only"}, status_code=403)
        if not self.auth.check_csrf(request.headers.get(CSRF_HEADER)):
            return JSON({"error": "missing or wrong anti-forgery token"}, status_code=403)
        if not same_origin(request.headers.get("origin"), request.headers.get("host")):
            return JSON({"error": "cross-site request refused"}, status_code=403)
        try:
            body = orjson.loads(await _body(request, 65536) or b"{}")
        except (orjson.JSONDecodeError, ValueError):
            return JSON({"error": "the body must be a JSON object"}, status_code=400)
        if not isinstance(body, dict):
            return JSON({"error": "the body must be a JSON object"}, status_code=400)
        action = _ACTIONS.get(request.path_params["action"])
        if action is None:
            return JSON({"error": "no such action"}, status_code=404)
        await self.collector.start()
        try:
            said = await action(self, body)
        except operations.ActionError as exc:
            return JSON({"error": str(exc)}, status_code=400)
        except AQError as exc:
            return JSON({"error": str(exc)}, status_code=503)
        return JSON({"ok": True, "message": said})


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name, "")
    if not isinstance(value, str) or len(value) > 1000:
        raise operations.ActionError(f"{name} must be a string")
    return value


def _queue(dashboard: Dashboard, body: dict[str, Any]) -> str:
    queue = _text(body, "queue")
    if queue not in dashboard.collector.queue_names():
        raise operations.ActionError(f"there is no queue named {queue!r}")
    return queue


async def _requeue(dashboard: Dashboard, body: dict[str, Any]) -> str:
    ids = body.get("ids")
    if ids is not None and not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
        raise operations.ActionError("ids must be a list of dead-letter ids, or absent for all")
    if ids == []:
        raise operations.ActionError("select at least one dead letter")
    return await operations.requeue_dead(dashboard.broker, _queue(dashboard, body), ids)


async def _retry(dashboard: Dashboard, body: dict[str, Any]) -> str:
    task_id = _text(body, "task_id")
    record = dashboard.board.history.get(task_id)
    queue = record.queue if record is not None else None
    return await operations.retry(dashboard.broker, task_id, queue)


_Action = Callable[[Dashboard, dict[str, Any]], Awaitable[str]]
_ACTIONS: dict[str, _Action] = {
    "shutdown": lambda d, b: operations.shutdown_worker(d.broker, _text(b, "worker")),
    "rate-limit": lambda d, b: operations.rate_limit(d.broker, _text(b, "task"), _text(b, "rate")),
    "cancel": lambda d, b: operations.cancel(d.broker, _text(b, "task_id")),
    "retry": _retry,
    "purge": lambda d, b: operations.purge(d.broker, _queue(d, b)),
    "requeue": _requeue,
    "purge-dead": lambda d, b: operations.purge_dead(d.broker, _queue(d, b)),
    "pause": lambda d, b: operations.pause_schedule(d.broker, _text(b, "name"), pause=True),
    "resume": lambda d, b: operations.pause_schedule(d.broker, _text(b, "name"), pause=False),
}

#: Headers a reverse proxy adds: a request that went through one may come from
#: anywhere, however local it looks.
_FORWARDED = ("forwarded", "x-forwarded-for", "x-forwarded-host", "x-real-ip")
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


async def _body(request: Request, limit: int) -> bytes:
    """The request's body, refused (ValueError) past ``limit`` bytes."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ValueError(f"the body is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _int(text: str | None, default: int, low: int, high: int) -> int:
    try:
        value = int(text) if text is not None else default
    except ValueError:
        return default
    return max(low, min(high, value))


class Guard:
    """Checks every request before the dashboard sees it (see :mod:`aq.web.security`)."""

    def __init__(self, app: ASGIApp, dashboard: Dashboard) -> None:
        self.app = app
        self.dashboard = dashboard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        root = scope.get("root_path", "")
        path = scope["path"][len(root) :] if scope["path"].startswith(root) else scope["path"]
        refusal = self._refusal(request, path, root)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refusal(self, request: Request, path: str, root: str) -> Response | None:
        dashboard, auth = self.dashboard, self.dashboard.auth
        if path.startswith("/static/"):
            return None
        if not auth.enabled:
            if dashboard.allow_anonymous:
                return None
            server = request.scope.get("server") or ("", 0)
            client = request.scope.get("client") or ("", 0)
            host = host_name(request.headers.get("host") or "")
            forwarded = any(h in request.headers for h in _FORWARDED)
            local = all(is_loopback(str(a)) for a in (server[0], client[0], host))
            if local and not forwarded:
                return None  # on loopback, from loopback, by a loopback name, no proxy
            return HTMLResponse(refusal_page(), status_code=403, headers=_PAGE_HEADERS)
        if path == "/login" and auth.token is not None:
            return None
        if auth.allows(request.headers.get("authorization"), request.cookies.get(SESSION_COOKIE)):
            return None
        if path.startswith("/api/"):
            return JSON({"error": "authentication required"}, status_code=401)
        if auth.token is not None:
            return RedirectResponse(f"{root}/login", status_code=303)
        return Response(
            "authentication required",
            status_code=401,
            headers={"WWW-Authenticate": 'Basic realm="aq dashboard", charset="UTF-8"'},
        )


def create_app(
    broker: Broker,
    *,
    auth: Auth | None = None,
    read_only: bool = False,
    history: int = 10_000,
    allow_anonymous: bool = False,
) -> Starlette:
    """The dashboard for ``broker`` as an ASGI application (see :func:`aq.dashboard`)."""
    dashboard = Dashboard(
        broker,
        auth=Auth.from_env() if auth is None else auth,
        read_only=read_only,
        history=history,
        allow_anonymous=allow_anonymous,
    )

    def page_route(path: str, name: str) -> Route:
        async def endpoint(request: Request) -> Response:
            return await dashboard.page(request, name)

        return Route(path, endpoint, methods=["GET"], name=f"page-{name}")

    routes: list[BaseRoute] = [page_route(path, name) for path, name in PAGES]
    routes += [
        Route("/login", dashboard.login, methods=["GET", "POST"]),
        Route("/logout", dashboard.logout, methods=["POST"]),
        Route("/api/overview", dashboard.overview),
        Route("/api/tasks", dashboard.tasks),
        Route("/api/tasks/{task_id:str}", dashboard.task),
        Route("/api/dead", dashboard.dead),
        Route("/api/schedules", dashboard.schedules),
        Route("/api/stream", dashboard.stream),
        Route("/api/actions/{action:str}", dashboard.act, methods=["POST"]),
        Mount("/static", StaticFiles(directory=_STATIC), name="static"),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Served on its own, it watches from the start; mounted in another
        # application (whose lifespan this one does not get), from its first request.
        await dashboard.collector.start()
        yield
        await dashboard.collector.stop()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.dashboard = dashboard
    app.add_middleware(Guard, dashboard=dashboard)
    return app

"""examples/fastapi_app.py over real HTTP: uvicorn in the test's loop, httpx as client."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn

from examples.fastapi_app import app, broker

HEX_ID = re.compile(r"[0-9a-f]{32}")

pytestmark = pytest.mark.skipif(
    not broker.transport.in_process,
    reason="the example runs its own worker only on an in-process broker (AQ_BROKER_URL is set)",
)


class _Server(uvicorn.Server):
    """A uvicorn server that reports when it is listening, so nothing has to poll."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.listening.set()


@contextlib.asynccontextmanager
async def serving() -> AsyncIterator[str]:
    """Run the example app on a free port for the block; yield its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = _Server(config)
    serve = asyncio.create_task(server.serve(), name="uvicorn")
    listening = asyncio.create_task(server.listening.wait())
    try:
        async with asyncio.timeout(10):
            await asyncio.wait({serve, listening}, return_when=asyncio.FIRST_COMPLETED)
        if not server.listening.is_set():
            await serve  # re-raises what stopped the server (SystemExit on a failed startup)
            pytest.fail("uvicorn stopped before it was listening")
        port: int = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        listening.cancel()
        server.should_exit = True
        await asyncio.wait_for(serve, timeout=10)


async def test_add_runs_on_the_in_app_worker() -> None:
    async with serving() as base_url, httpx.AsyncClient(base_url=base_url) as client:
        response = await client.post("/add", params={"x": 2, "y": 3})
        assert response.status_code == 200, response.text
        data = response.json()
        assert data["result"] == 5
        assert HEX_ID.fullmatch(data["task_id"])

        second = (await client.post("/add", params={"x": -4, "y": 10})).json()
        assert second["result"] == 6
        assert second["task_id"] != data["task_id"]
    # The lifespan stopped the worker and closed the broker: nothing left running.
    assert not broker.is_started


async def test_emails_are_queued_without_waiting() -> None:
    async with serving() as base_url, httpx.AsyncClient(base_url=base_url) as client:
        response = await client.post("/emails", json={"to": "ada@example.com", "body": "hello"})
        assert response.status_code == 202, response.text
        assert HEX_ID.fullmatch(response.json()["task_id"])

        invalid = await client.post("/emails", json={"to": "ada@example.com"})
        assert invalid.status_code == 422
    assert not broker.is_started

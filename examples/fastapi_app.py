"""aq inside a FastAPI app: endpoints send tasks and await their pushed results.

On the default in-process memory:// broker the app runs its own worker for its
lifespan, so one command serves requests and runs the tasks:

    uvicorn examples.fastapi_app:app

    curl -X POST 'http://127.0.0.1:8000/add?x=2&y=3'
    curl -X POST http://127.0.0.1:8000/emails \\
         -H 'content-type: application/json' -d '{"to": "ada@example.com", "body": "hi"}'

With AQ_BROKER_URL pointing at a real broker, the app only sends tasks; run
the workers separately, on the same module:

    AQ_BROKER_URL=redis://127.0.0.1:6379/0 uvicorn examples.fastapi_app:app
    AQ_BROKER_URL=redis://127.0.0.1:6379/0 aq worker examples.fastapi_app:broker
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, HTTPException, status
from pydantic import BaseModel

import aq

log = logging.getLogger(__name__)

# AQ_BROKER_URL, when set, takes precedence over this URL.
broker = aq.Broker("memory://")


@broker.task
async def add(x: int, y: int) -> int:
    """Add two numbers on a worker."""
    return x + y


@broker.task(timeout=30, retries=3)
async def send_email(to: str, body: str) -> dict[str, str]:
    """Pretend to send an email (a real app would call its mail service here)."""
    await asyncio.sleep(0.01)
    log.info("sent %d characters to %s", len(body), to)
    return {"to": to, "status": "sent"}


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Connect to the broker; on an in-process broker, also run a worker here."""
    await broker.startup()
    try:
        if broker.transport.in_process:
            async with aq.Worker(broker, shutdown_timeout=10):
                yield
        else:
            yield
    finally:
        await broker.shutdown()


app = FastAPI(title="aq example", lifespan=lifespan)


class Sum(BaseModel):
    task_id: str
    result: int


class Email(BaseModel):
    to: str
    body: str


class Queued(BaseModel):
    task_id: str


@app.post("/add")
async def add_numbers(x: int, y: int) -> Sum:
    """Send ``add(x, y)`` to a worker and wait for its result."""
    handle = await add.kiq(x, y)
    try:
        result = await handle.result(timeout=5)
    except aq.ResultTimeout as exc:
        raise HTTPException(status.HTTP_504_GATEWAY_TIMEOUT, str(exc)) from exc
    except aq.TaskFailed as exc:
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, str(exc)) from exc
    return Sum(task_id=handle.id, result=result)


@app.post("/emails", status_code=status.HTTP_202_ACCEPTED)
async def queue_email(email: Email) -> Queued:
    """Queue an email and answer at once; the worker sends it in the background."""
    handle = await send_email.kiq(email.to, email.body)
    return Queued(task_id=handle.id)

"""Faults an operator meets on Redis, injected with the raw client: deleted
streams and groups, junk in a delayed set, producers that die. In each, the
worker keeps working and says what happened, and nothing outlives its bound.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

import aq
from aq.testing import running_worker
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.slow


@pytest.fixture
async def url() -> AsyncIterator[str]:
    """A fresh prefix on the shared Redis, deleted afterwards."""
    prefix = f"aqfault-{uuid.uuid4().hex[:12]}"
    yield f"{REDIS_URL}?prefix={prefix}"
    raw = Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in raw.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await raw.delete(*keys)
    finally:
        await raw.aclose()


@pytest.fixture
async def raw() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    try:
        yield client
    finally:
        await client.aclose()


async def test_a_dead_producers_reply_stream_expires_with_its_liveness_key(
    url: str, raw: Redis
) -> None:
    broker = aq.Broker(url)  # reply_ttl 300 s

    @broker.task(name="echo")
    async def echo(i: int) -> int:
        return i

    async with broker, running_worker(broker):
        transport: Any = broker.transport
        address = await broker.reply_address()
        stream, alive = transport.keys.inbox(address)
        # As if the producer stopped refreshing a while ago: 2 s of life left.
        await raw.pexpire(alive, 2000)
        assert await (await echo.kiq(1)).result(timeout=10) == 1  # the reply-and-ack script
        after_reply_and_ack = await raw.pttl(stream)
        await transport.send_reply(address, b"{}")  # the plain reply script
        after_reply = await raw.pttl(stream)
        left = await raw.pttl(alive)
    assert 0 < after_reply_and_ack <= 2000
    assert 0 < after_reply <= 2000
    assert after_reply <= left + 50  # never outlives the liveness key

"""Shared fixtures: the broker contract suite runs against every transport."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest

import aq

# Transports the contract suite runs against; RabbitMQ joins here.
BROKERS = ["memory", "redis"]

#: The Redis server `make test` starts; tests isolate themselves by key prefix.
REDIS_URL = os.environ.get("AQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def broker_url(kind: str) -> str:
    """A URL for an isolated broker of ``kind``."""
    if kind == "memory":
        return f"memory://test-{uuid.uuid4().hex}"
    if kind == "redis":
        return f"{REDIS_URL}?prefix=aqtest-{uuid.uuid4().hex[:12]}"
    raise ValueError(kind)


async def _delete_prefix(url: str) -> None:
    transport = aq.Broker(url).transport
    async with transport:
        await transport.delete_namespace()  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def _no_env_broker_url(monkeypatch: pytest.MonkeyPatch) -> None:
    # AQ_BROKER_URL overrides the URL given to aq.Broker; tests choose their own.
    monkeypatch.delenv("AQ_BROKER_URL", raising=False)


@pytest.fixture(params=BROKERS)
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[aq.Broker]:
    """A started broker on a fresh namespace of each transport."""
    kind = str(request.param)
    b = aq.Broker(broker_url(kind))
    try:
        async with b:
            yield b
    finally:
        if kind == "redis":
            await _delete_prefix(b.url)


def pytest_report_header() -> str:
    env = os.environ.get("AQ_BROKER_URL")
    return f"aq contract brokers: {', '.join(BROKERS)}; AQ_BROKER_URL={env}"

"""Shared fixtures: the broker contract suite runs against every transport."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest

import aq

# Transports the contract suite runs against; Redis and RabbitMQ join here.
BROKERS = ["memory"]


def broker_url(kind: str) -> str:
    """A URL for an isolated broker of ``kind``."""
    if kind == "memory":
        return f"memory://test-{uuid.uuid4().hex}"
    raise ValueError(kind)


@pytest.fixture(autouse=True)
def _no_env_broker_url(monkeypatch: pytest.MonkeyPatch) -> None:
    # AQ_BROKER_URL overrides the URL given to aq.Broker; tests choose their own.
    monkeypatch.delenv("AQ_BROKER_URL", raising=False)


@pytest.fixture(params=BROKERS)
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[aq.Broker]:
    """A started broker on a fresh namespace of each transport."""
    b = aq.Broker(broker_url(str(request.param)))
    async with b:
        yield b


def pytest_report_header() -> str:
    env = os.environ.get("AQ_BROKER_URL")
    return f"aq contract brokers: {', '.join(BROKERS)}; AQ_BROKER_URL={env}"

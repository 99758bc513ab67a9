"""Pytest fixtures for applications that use aq.

Enable with ``pytest_plugins = ["aq.testing.pytest_plugin"]`` in a conftest.py,
then override ``aq_broker`` to return your application's broker::

    @pytest.fixture
    def aq_broker() -> aq.Broker:
        return app.tasks.broker

``aq_worker`` runs a worker on it for the duration of an async test.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from aq.broker import Broker
from aq.testing import running_worker
from aq.worker.worker import Worker

__all__ = ["aq_broker", "aq_worker"]


@pytest.fixture
def aq_broker() -> Broker:
    """A fresh broker on a private memory:// hub; override it to use your own."""
    return Broker(f"memory://pytest-{uuid.uuid4().hex}")


@pytest_asyncio.fixture
async def aq_worker(aq_broker: Broker) -> AsyncIterator[Worker]:
    """A running worker on ``aq_broker``; the broker is shut down afterwards."""
    async with aq_broker, running_worker(aq_broker) as worker:
        yield worker

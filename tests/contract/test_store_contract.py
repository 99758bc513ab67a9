"""aq's own stores pass the store contract offered to third-party backends: each
transport's own store, and stores built from a URL with ``create_store``."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

import aq
from aq.testing.contract import StoreContract
from aq.transport import Store, create_store
from tests.conftest import _delete_prefix, broker_url

STORES = ["memory", "redis", "redis-cluster", "memory-url", "redis-url"]


class TestStoreContract(StoreContract):
    @pytest.fixture(params=STORES)
    async def store(self, request: pytest.FixtureRequest) -> AsyncIterator[Store]:
        kind = str(request.param)
        if kind == "memory-url":
            async with create_store(f"memory://store-{uuid.uuid4().hex}") as store:
                yield store
        elif kind == "redis-url":
            url = broker_url("redis")
            try:
                async with create_store(url) as store:
                    yield store
            finally:
                await _delete_prefix(url)
        else:
            cluster = request.getfixturevalue("redis_cluster") if kind == "redis-cluster" else ""
            broker = aq.Broker(broker_url(kind, cluster))
            try:
                async with broker:
                    assert broker.store is not None
                    yield broker.store
            finally:
                if kind.startswith("redis"):
                    await _delete_prefix(broker.url)

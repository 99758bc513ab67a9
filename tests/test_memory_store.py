"""The memory store drops expired values without scanning what it keeps."""

from __future__ import annotations

import uuid
from typing import Any

import aq
import aq.testing
from aq.transport.memory import MemoryStore


class _CountingDict(dict[str, Any]):
    """A dict that counts how often it is walked."""

    walks = 0

    def items(self) -> Any:
        type(self).walks += 1
        return super().items()

    def __iter__(self) -> Any:
        type(self).walks += 1
        return super().__iter__()

    def keys(self) -> Any:
        type(self).walks += 1
        return super().keys()

    def values(self) -> Any:
        type(self).walks += 1
        return super().values()


async def test_writing_never_walks_every_value_kept() -> None:
    """Before, each stored result scanned every result kept (quadratic over a long run)."""
    async with MemoryStore(f"memory://{uuid.uuid4().hex}") as store:
        hub = store.hub
        hub.values = _CountingDict(hub.values)
        for i in range(2_000):
            await store.set(f"result:{i}", b"x", ttl=3600)
        assert _CountingDict.walks == 0
        assert await store.get("result:1999") == b"x"


async def test_a_write_drops_the_values_that_expired() -> None:
    async with MemoryStore(f"memory://{uuid.uuid4().hex}") as store:
        for i in range(100):
            await store.set(f"old:{i}", b"x", ttl=1e-9)
        await store.set("new", b"y", ttl=3600)
        assert set(store.hub.values) == {"new"}


async def test_a_broker_keeps_results_in_its_store() -> None:
    broker = aq.Broker(f"memory://{uuid.uuid4().hex}", result_ttl=60)
    assert isinstance(broker.store, MemoryStore)
    async with broker:

        @broker.task
        async def double(x: int) -> int:
            return x * 2

        async with aq.testing.running_worker(broker):
            handle = await double.kiq(21)
            assert await handle.result(timeout=5) == 42
        assert await broker.get_result(handle.id) == 42
        assert await broker.store.get(f"result:{handle.id}") is not None

"""A transport of another package plugs in: registered by scheme, declared as an
entry point, or handed to ``aq.Broker(transport=...)``; and it passes the contracts
aq offers to such backends."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

import aq
import aq.transport
from aq.testing import running_worker
from aq.testing.contract import TaskContract, TransportContract
from aq.transport import Admin, Consumer, Inbox, Store, Transport
from aq.transport.memory import MemoryStore, MemoryTransport


class WrappedTransport(Transport):
    """A third party's transport: ``wrapped://name`` passes everything to ``memory://name``,
    and notes the queues it published to."""

    in_process = True

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(url)
        self.inner = MemoryTransport("memory://" + url.split("://", 1)[1], options)
        self.published: list[str] = []

    @property
    def admin(self) -> Admin:
        return self.inner.admin

    def store(self) -> Store | None:
        return self.inner.store()

    async def connect(self) -> None:
        await self.inner.connect()

    async def close(self) -> None:
        await self.inner.close()

    async def publish(
        self, queue: str, body: bytes, *, priority: int = 0, eta: float | None = None
    ) -> None:
        self.published.append(queue)
        await self.inner.publish(queue, body, priority=priority, eta=eta)

    async def open_consumer(self, queues: list[str], prefetch: int, isolated: bool) -> Consumer:
        return await self.inner.consume(queues, prefetch, isolated=isolated)

    async def open_inbox(self) -> Inbox:
        return await self.inner.open_inbox()

    async def send_reply(self, address: str, body: bytes) -> None:
        await self.inner.send_reply(address, body)

    async def broadcast(self, body: bytes) -> None:
        await self.inner.broadcast(body)

    async def subscribe_control(self) -> Inbox:
        return await self.inner.subscribe_control()

    async def publish_events(self, body: bytes) -> None:
        await self.inner.publish_events(body)

    async def subscribe_events(self) -> Inbox:
        return await self.inner.subscribe_events()


@pytest.fixture(autouse=True)
def wrapped_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    """``wrapped://`` registered for one test; the registry is as before afterwards."""
    monkeypatch.setattr(aq.transport, "_TRANSPORTS", dict(aq.transport._TRANSPORTS))
    monkeypatch.setattr(aq.transport, "_loaded_entry_points", set())
    aq.transport.register_transport("wrapped", WrappedTransport)


def wrapped_url() -> str:
    return f"wrapped://test-{uuid.uuid4().hex}"


class TestWrappedTransportContract(TransportContract):
    @pytest.fixture
    async def transport(self, wrapped_scheme: None) -> AsyncIterator[Transport]:
        async with aq.transport.create_transport(wrapped_url()) as transport:
            assert isinstance(transport, WrappedTransport)
            yield transport


class TestWrappedTaskContract(TaskContract):
    @pytest.fixture
    async def broker(self, wrapped_scheme: None) -> AsyncIterator[aq.Broker]:
        async with aq.Broker(wrapped_url()) as broker:
            assert isinstance(broker.transport, WrappedTransport)
            yield broker


async def test_a_broker_accepts_a_transport_object_and_sends_through_it() -> None:
    transport = WrappedTransport(wrapped_url())
    broker = aq.Broker(transport=transport)

    @broker.task
    async def add(x: int, y: int) -> int:
        return x + y

    async with broker, running_worker(broker):
        assert await (await add.kiq(1, 2)).result(timeout=5) == 3
    assert broker.transport is transport
    assert broker.admin is transport.admin
    assert transport.published == ["default"]


def test_a_broker_accepts_a_store_object_beside_a_transport_object() -> None:
    store = MemoryStore(f"memory://store-{uuid.uuid4().hex}")
    broker = aq.Broker(transport=WrappedTransport(wrapped_url()), store=store)
    assert broker.store is store


def test_an_unknown_scheme_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(aq.ConfigurationError) as info:
        aq.Broker("nosuch://x")
    message = str(info.value)
    assert "unknown broker URL scheme 'nosuch'" in message
    for scheme in ("memory://", "redis://", "amqp://", "wrapped://"):
        assert scheme in message


def test_a_factory_that_builds_no_transport_is_refused() -> None:
    aq.transport.register_transport("bogus", lambda url, options: object())
    with pytest.raises(aq.ConfigurationError, match="not a Transport"):
        aq.Broker("bogus://x")


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A distribution on ``sys.path`` that declares ``plugged://`` in ``aq.transports``."""
    info = tmp_path / "aq_plugged-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: aq-plugged\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[aq.transports]\nplugged = {__name__}:WrappedTransport\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))


@pytest.mark.usefixtures("installed_plugin")
def test_a_scheme_declared_as_an_entry_point_is_found() -> None:
    broker = aq.Broker("plugged://x")
    assert isinstance(broker.transport, WrappedTransport)
    assert broker.url == "plugged://x"

"""A silent network partition is noticed within the bound the docs give, with the
default settings, and work resumes on new connections.

A partition (or a NAT entry that expired) closes nothing: packets just stop, so no
FIN or RST tells either end. Each test puts a worker and a producer behind a
TcpProxy, freezes every connection through it (no byte passes either way, neither
socket is closed) and checks that both notice by their own timeouts, while new
connections through the proxy work at once. A second producer, connected directly,
sends a task the frozen worker must pick up. The shared servers are used, under a
fresh prefix deleted afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import aq
from aq.testing import running_worker
from aq.transport.redis.connection import RedisSettings
from tests.conftest import AMQP_URL, REDIS_URL
from tests.reliability.rabbit import TcpProxy

pytestmark = pytest.mark.slow

logger = logging.getLogger(__name__)

#: docs/rabbitmq.md: with the default heartbeat (5 s) aiormq notices a dead
#: connection within 20 s, and aio-pika reconnects 1 s later.
AMQP_RESUMED_WITHIN = 20.0 + 1.0
#: docs/redis.md: every read or write on a dead connection fails after socket_timeout
#: and is retried on another connection; one idle in the pool since before the
#: partition is dead too and costs its next user the timeout once more.
REDIS_NOTICED_WITHIN = RedisSettings().socket_timeout
REDIS_RESUMED_WITHIN = 2 * REDIS_NOTICED_WITHIN
#: Room for reconnecting, redeclaring and running a task on a loaded test machine.
MARGIN = 3.0


def _prefix() -> str:
    return f"aqpart-{uuid.uuid4().hex[:12]}"


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


@pytest.fixture
async def amqp_url() -> AsyncIterator[str]:
    """A fresh namespace on the shared RabbitMQ, its queues deleted afterwards."""
    url = f"{AMQP_URL}?prefix={_prefix()}"
    yield url
    transport: Any = aq.Broker(url).transport
    async with transport:
        transport.declarer.declared.update(["default"])
        await transport.delete_namespace()


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    """A fresh namespace on the shared Redis, its keys deleted afterwards."""
    url = f"{REDIS_URL}?prefix={_prefix()}"
    yield url
    transport: Any = aq.Broker(url).transport
    async with transport:
        await transport.delete_namespace()


@pytest.fixture
async def proxy() -> AsyncIterator[Callable[[int], TcpProxy]]:
    """Starts proxies to a local port on demand and closes them (resetting what
    they froze) after the test."""
    started: list[TcpProxy] = []

    def start(port: int) -> TcpProxy:
        started.append(TcpProxy(port))
        return started[-1]

    yield start
    for each in started:
        await each.close()


def _echo(broker: aq.Broker) -> aq.Task[[int], int]:
    @broker.task(name="echo")
    async def echo(i: int) -> int:
        return i

    return echo


class _Clock:
    """Seconds since the freeze."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._start = self._loop.time()

    def __call__(self, when: float | None = None) -> float:
        """Now, or ``when`` (the event loop's time), in seconds since the freeze."""
        return (self._loop.time() if when is None else when) - self._start


def _reconnected(broker: aq.Broker) -> asyncio.Future[float]:
    """The event loop's time when aio-pika had reconnected ``broker`` and restored
    its channels."""
    loop = asyncio.get_running_loop()
    when: asyncio.Future[float] = loop.create_future()

    def done(_connection: object) -> None:
        if not when.done():
            when.set_result(loop.time())

    transport: Any = broker.transport
    transport.context.connection.reconnect_callbacks.add(done)
    return when


class _AqEvent(logging.Handler):
    """Sets ``seen`` when aq logs the structured event ``name``."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "aq_event", None) == self.name:
            self.seen.set()


@pytest.mark.timeout(90)
async def test_a_silent_partition_from_rabbitmq_is_noticed_and_work_resumes_within_the_bound(
    amqp_url: str, proxy: Callable[[int], TcpProxy]
) -> None:
    link = proxy(_port(AMQP_URL))
    await link.start()
    worker_broker = aq.Broker(link.url_for(amqp_url))
    producer = aq.Broker(link.url_for(amqp_url))
    direct = aq.Broker(amqp_url)
    _echo(worker_broker)
    via_proxy, via_direct = _echo(producer), _echo(direct)

    async with worker_broker, producer, direct, running_worker(worker_broker):
        # Consumers and the producer's reply queue all work through the proxy.
        assert await (await via_proxy.kiq(0)).result(timeout=10) == 0
        producer_back = _reconnected(producer)
        await link.freeze()
        clock = _Clock()
        # RabbitMQ hands this to the frozen consumer, and takes it back when it drops
        # the dead connection itself (after 2 to 3 heartbeats): only the worker's
        # reconnecting through the proxy can run it.
        handle = await via_direct.kiq(1)
        assert await handle.result(timeout=AMQP_RESUMED_WITHIN + MARGIN) == 1
        ran = clock()
        async with asyncio.timeout(max(0.0, AMQP_RESUMED_WITHIN + MARGIN - clock())):
            producer_back_at = clock(await producer_back)
        # The producer publishes and reads its replies on its new connection.
        assert await (await via_proxy.kiq(2)).result(timeout=MARGIN) == 2

    logger.info(
        "RabbitMQ partition: the worker ran a task after %.1f s, the producer was back "
        "after %.1f s",
        ran,
        producer_back_at,
    )
    # Nothing passed the frozen links: only a heartbeat timeout (no frame for 18 s) ended it.
    assert ran > 10


@pytest.mark.timeout(60)
async def test_a_silent_partition_from_redis_is_noticed_and_work_resumes_within_the_bound(
    redis_url: str, proxy: Callable[[int], TcpProxy]
) -> None:
    link = proxy(_port(REDIS_URL))
    await link.start()
    worker_broker = aq.Broker(link.url_for(redis_url))
    producer = aq.Broker(link.url_for(redis_url))
    direct = aq.Broker(redis_url)
    _echo(worker_broker)
    via_proxy, via_direct = _echo(producer), _echo(direct)
    fetcher_lost = _AqEvent("redis.reconnecting")
    logging.getLogger("aq.redis").addHandler(fetcher_lost)

    async def through_the_partition(clock: _Clock) -> tuple[float, float]:
        """kiq() on the frozen producer, then its result through its reply reader,
        which was blocked in a read on a frozen connection: when each returned."""
        handle = await via_proxy.kiq(2)
        sent = clock()
        assert await handle.result(timeout=REDIS_RESUMED_WITHIN + MARGIN) == 2
        return sent, clock()

    try:
        async with worker_broker, producer, direct, running_worker(worker_broker):
            # The worker's loops and the producer's reply reader all read through the proxy.
            assert await (await via_proxy.kiq(0)).result(timeout=10) == 0
            await link.freeze()
            clock = _Clock()
            producer_side = asyncio.create_task(through_the_partition(clock))
            # Sent at once, it goes to the read the worker left blocked at Redis, whose
            # answer is lost with the link: the worker takes it again once reconnected.
            direct_handle = await via_direct.kiq(1)
            async with asyncio.timeout(REDIS_NOTICED_WITHIN + MARGIN):
                await fetcher_lost.seen.wait()
            worker_noticed = clock()
            assert await direct_handle.result(timeout=REDIS_RESUMED_WITHIN + MARGIN) == 1
            ran = clock()
            sent, replied = await producer_side
    finally:
        logging.getLogger("aq.redis").removeHandler(fetcher_lost)

    logger.info(
        "Redis partition: the worker noticed after %.1f s and ran a task after %.1f s; "
        "the producer's kiq() returned after %.1f s, its result after %.1f s",
        worker_noticed,
        ran,
        sent,
        replied,
    )
    for seconds in (worker_noticed, sent, replied):
        # Nothing passed the frozen links: only the socket timeout ended the wait (the
        # worker's read was sent up to 1 s before the freeze, so it timed out sooner).
        assert seconds > REDIS_NOTICED_WITHIN - 1.5
    assert worker_noticed <= REDIS_NOTICED_WITHIN + MARGIN
    assert sent <= REDIS_NOTICED_WITHIN + MARGIN
    # Sending a result may pick a connection idle in the worker's pool since before the
    # freeze, dead too, and wait out the timeout once more (the producer's often does).
    assert ran <= REDIS_RESUMED_WITHIN + MARGIN
    assert replied <= REDIS_RESUMED_WITHIN + MARGIN


@pytest.mark.timeout(60)
async def test_a_kiq_waiting_for_its_confirm_when_rabbitmq_is_found_dead_is_sent_again(
    amqp_url: str, proxy: Callable[[int], TcpProxy]
) -> None:
    link = proxy(_port(AMQP_URL))
    await link.start()
    # A 1 s heartbeat notices within 7 s, well inside publish_timeout: the kiq() must
    # outlive the connection it started on.
    producer = aq.Broker(link.url_for(f"{amqp_url}&heartbeat=1&publish_timeout=30"))
    worker_broker = aq.Broker(amqp_url)
    _echo(worker_broker)
    echo = _echo(producer)

    async with producer, worker_broker, running_worker(worker_broker):
        assert await (await echo.kiq(0)).result(timeout=10) == 0
        await link.freeze()
        try:
            handle = await echo.kiq(1)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            pytest.fail("kiq() raised CancelledError when the dead connection was noticed")
        assert await handle.result(timeout=10) == 1

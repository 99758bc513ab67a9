"""TLS and virtual hosts reach RabbitMQ through the broker URL alone.

One private node (tests/reliability/rabbit.py) serves the whole module, with a plain
listener and a TLS listener whose certificate a throwaway CA signed; rabbitmqctl gives
it a virtual host and a user that may use only that one. Everything stays on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlencode

import pytest
import pytest_asyncio

import aq
from aq.testing import running_worker
from tests.reliability.certs import Certificates, make_certificates
from tests.reliability.rabbit import RabbitServer, _free_ports

# One node for the module: its fixture and the tests share the module's event loop.
pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

VHOST = "aq-test"
USER, PASSWORD = "app", "s3cret"


@dataclass(frozen=True)
class Node:
    server: RabbitServer
    ssl_port: int
    certificates: Certificates


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def node(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Node]:
    """A started private node with a TLS listener, vhost ``aq-test`` and user ``app``
    (permitted on ``aq-test`` only); killed after the module."""
    directory = tmp_path_factory.mktemp("tls")
    certificates = make_certificates(directory / "certs")
    (ssl_port,) = _free_ports(1)
    server = RabbitServer(
        directory / "rabbitmq",
        extra_config=(
            f"listeners.ssl.default = 127.0.0.1:{ssl_port}\n"
            f"ssl_options.cacertfile = {certificates.ca}\n"
            f"ssl_options.certfile = {certificates.cert}\n"
            f"ssl_options.keyfile = {certificates.key}\n"
            "ssl_options.verify = verify_none\n"
            "ssl_options.fail_if_no_peer_cert = false\n"
        ),
    )
    await server.start()  # returns once the plain listener takes AMQP: TLS is up by then
    try:
        await asyncio.gather(server.ctl("add_vhost", VHOST), server.ctl("add_user", USER, PASSWORD))
        await server.ctl("set_permissions", "-p", VHOST, USER, ".*", ".*", ".*")
        yield Node(server, ssl_port, certificates)
    finally:
        await server.kill()


def _query(**options: object) -> str:
    return urlencode({"prefix": f"aqtls-{uuid.uuid4().hex[:12]}", **options})


def _adder(broker: aq.Broker) -> aq.Task[[int, int], int]:
    @broker.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    return add


@pytest.mark.timeout(120)
async def test_an_amqps_url_with_a_cafile_runs_a_task_over_tls(node: Node) -> None:
    url = f"amqps://guest:guest@127.0.0.1:{node.ssl_port}/?" + _query(cafile=node.certificates.ca)
    broker = aq.Broker(url)
    add = _adder(broker)
    # The TLS listener speaks nothing but TLS, and only the cafile lets the client trust
    # its certificate (the next test): a result proves both reached aio-pika.
    async with broker, running_worker(broker):
        assert await (await add.kiq(2, 3)).result(timeout=10) == 5


@pytest.mark.timeout(120)
async def test_tls_without_the_ca_fails_at_once_saying_the_certificate_failed(
    node: Node,
) -> None:
    url = f"amqps://guest:guest@127.0.0.1:{node.ssl_port}/?" + _query(publish_timeout=30)
    started = time.monotonic()
    with pytest.raises(
        aq.ConfigurationError, match=r"TLS with RabbitMQ failed.*CERTIFICATE_VERIFY"
    ):
        await aq.Broker(url).startup()
    assert time.monotonic() - started < 5  # not retried: it cannot fix itself


@pytest.mark.timeout(120)
async def test_tls_to_the_plain_port_or_a_missing_cafile_fails_at_once(node: Node) -> None:
    plain = f"amqps://guest:guest@127.0.0.1:{node.server.port}/?" + _query(publish_timeout=30)
    with pytest.raises(aq.ConfigurationError, match="TLS with RabbitMQ failed"):
        await aq.Broker(plain).startup()
    missing = f"amqps://guest:guest@127.0.0.1:{node.ssl_port}/?" + _query(
        cafile="/nonexistent/ca.pem", publish_timeout=30
    )
    with pytest.raises(aq.ConfigurationError, match="TLS"):
        await aq.Broker(missing).startup()


@pytest.mark.timeout(120)
async def test_a_vhost_in_the_url_runs_a_task_in_that_vhost(node: Node) -> None:
    # The user may use this vhost only, so a result proves the path reached RabbitMQ.
    url = f"amqp://{USER}:{PASSWORD}@127.0.0.1:{node.server.port}/{VHOST}?" + _query()
    broker = aq.Broker(url)
    add = _adder(broker)
    async with broker, running_worker(broker):
        assert await (await add.kiq(2, 3)).result(timeout=10) == 5


@pytest.mark.timeout(120)
async def test_a_vhost_the_user_may_not_use_fails_at_startup_naming_the_vhost(
    node: Node,
) -> None:
    # The same user and password as above: only the vhost (the default, /) differs.
    url = f"amqp://{USER}:{PASSWORD}@127.0.0.1:{node.server.port}/?" + _query(publish_timeout=1)
    with pytest.raises(aq.ConfigurationError, match="virtual host") as caught:
        await aq.Broker(url).startup()
    assert str(caught.value) == (
        "connect: RabbitMQ closed the connection while opening it: the virtual host in "
        "the broker URL does not exist, or this user may not use it"
    )

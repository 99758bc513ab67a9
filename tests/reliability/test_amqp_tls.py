"""TLS, virtual hosts and credentials reach RabbitMQ through the broker URL alone.

Two private nodes (tests/reliability/rabbit.py), started side by side, serve the
whole module, each with a plain listener and a TLS listener whose certificate a
throwaway CA signed (tests/reliability/certs.py): the first asks clients for no
certificate, the second requires one its CA signed (RabbitMQ's ``ssl_options``
hold for every TLS listener of a node, so one node cannot do both). On the first,
rabbitmqctl makes a virtual host and a user that may use only that one, and users
whose passwords are fresh secrets. Everything stays on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest
import pytest_asyncio

import aq
from aq.testing import running_worker
from tests.reliability.certs import Certificates, fails_fast, make_certificates
from tests.reliability.leaks import aq_command, assert_shown_nowhere, shown
from tests.reliability.rabbit import RabbitServer, _free_ports

# One pair of nodes for the module: its fixture and the tests share the module's loop.
pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

VHOST = "aq-test"
USER, PASSWORD = "app", "s3cret"


@dataclass(frozen=True)
class Node:
    server: RabbitServer
    ssl_port: int
    certificates: Certificates  # signed the server's certificate (and a client's)
    stranger: Certificates  # another CA, and a client certificate it signed


def _node(
    directory: Path, certificates: Certificates, *, verify_clients: bool
) -> tuple[RabbitServer, int]:
    (ssl_port,) = _free_ports(1)
    verify = "verify_peer" if verify_clients else "verify_none"
    server = RabbitServer(
        directory,
        extra_config=(
            f"listeners.ssl.default = 127.0.0.1:{ssl_port}\n"
            f"ssl_options.cacertfile = {certificates.ca}\n"
            f"ssl_options.certfile = {certificates.cert}\n"
            f"ssl_options.keyfile = {certificates.key}\n"
            f"ssl_options.verify = {verify}\n"
            f"ssl_options.fail_if_no_peer_cert = {str(verify_clients).lower()}\n"
        ),
    )
    return server, ssl_port


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def nodes(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Node, Node]]:
    """Two started private nodes: one whose TLS listener asks for no client
    certificate (with vhost ``aq-test`` and user ``app``, permitted on ``aq-test``
    only), and one whose TLS listener requires one; killed after the module."""
    directory = tmp_path_factory.mktemp("tls")
    certificates = make_certificates(directory / "certs")
    stranger = make_certificates(directory / "stranger")
    (open_server, open_port) = _node(directory / "open", certificates, verify_clients=False)
    (strict_server, strict_port) = _node(directory / "strict", certificates, verify_clients=True)
    try:
        # Each returns once its plain listener takes AMQP: TLS is up by then.
        started = await asyncio.gather(
            open_server.start(), strict_server.start(), return_exceptions=True
        )
        for outcome in started:
            if isinstance(outcome, BaseException):
                raise outcome
        await asyncio.gather(
            open_server.ctl("add_vhost", VHOST), open_server.ctl("add_user", USER, PASSWORD)
        )
        await open_server.ctl("set_permissions", "-p", VHOST, USER, ".*", ".*", ".*")
        yield (
            Node(open_server, open_port, certificates, stranger),
            Node(strict_server, strict_port, certificates, stranger),
        )
    finally:
        await asyncio.gather(open_server.kill(), strict_server.kill())


@pytest.fixture(scope="module")
def node(nodes: tuple[Node, Node]) -> Node:
    """The node whose TLS listener asks for no client certificate."""
    return nodes[0]


@pytest.fixture(scope="module")
def strict_node(nodes: tuple[Node, Node]) -> Node:
    """The node whose TLS listener requires a client certificate its CA signed."""
    return nodes[1]


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
@pytest.mark.parametrize("which", ["the system's CAs", "a stranger CA"])
async def test_a_ca_that_did_not_sign_the_servers_certificate_fails_at_once(
    node: Node, which: str
) -> None:
    options: dict[str, object] = {"publish_timeout": 30}
    if which == "a stranger CA":
        options["cafile"] = node.stranger.ca
    url = f"amqps://guest:guest@127.0.0.1:{node.ssl_port}/?" + _query(**options)
    await fails_fast(url, r"TLS with RabbitMQ failed.*CERTIFICATE_VERIFY.*not signed by the CA")


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


@pytest.mark.timeout(120)
async def test_a_client_certificate_in_the_url_is_accepted_by_a_listener_that_requires_one(
    strict_node: Node,
) -> None:
    trusted = strict_node.certificates
    query = _query(cafile=trusted.ca, certfile=trusted.client_cert, keyfile=trusted.client_key)
    broker = aq.Broker(f"amqps://guest:guest@127.0.0.1:{strict_node.ssl_port}/?{query}")
    add = _adder(broker)
    async with broker, running_worker(broker):
        assert await (await add.kiq(2, 3)).result(timeout=10) == 5


@pytest.mark.timeout(120)
async def test_a_listener_that_requires_client_certificates_refuses_a_client_without_one(
    strict_node: Node,
) -> None:
    query = _query(cafile=strict_node.certificates.ca, publish_timeout=30)
    await fails_fast(
        f"amqps://guest:guest@127.0.0.1:{strict_node.ssl_port}/?{query}",
        r"TLS with RabbitMQ failed.*CERTIFICATE_REQUIRED.*give certfile and keyfile",
    )


@pytest.mark.timeout(120)
async def test_a_client_certificate_its_ca_did_not_sign_is_refused(strict_node: Node) -> None:
    foreign = strict_node.stranger
    query = _query(
        cafile=strict_node.certificates.ca,
        certfile=foreign.client_cert,
        keyfile=foreign.client_key,
        publish_timeout=30,
    )
    await fails_fast(
        f"amqps://guest:guest@127.0.0.1:{strict_node.ssl_port}/?{query}",
        r"TLS with RabbitMQ failed.*UNKNOWN_CA",
    )


async def _user_with_a_secret(node: Node) -> tuple[str, str]:
    """A new user of vhost / whose password is a fresh secret."""
    user, secret = f"user-{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    await node.server.ctl("add_user", user, secret)
    await node.server.ctl("set_permissions", "-p", "/", user, ".*", ".*", ".*")
    return user, secret


@pytest.mark.timeout(120)
async def test_a_wrong_password_fails_startup_at_once_and_shows_neither_password(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    user, right = await _user_with_a_secret(node)
    wrong = f"pw-{uuid.uuid4().hex}"
    caplog.set_level(logging.DEBUG)
    url = f"amqp://{user}:{wrong}@127.0.0.1:{node.server.port}/?" + _query(publish_timeout=30)
    error = await fails_fast(url, "RabbitMQ refused the credentials in the broker URL")
    assert_shown_nowhere(shown(caplog, error), right, wrong)


@pytest.mark.timeout(120)
async def test_a_task_run_with_the_right_password_logs_nothing_of_it(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    user, right = await _user_with_a_secret(node)
    caplog.set_level(logging.DEBUG)
    broker = aq.Broker(f"amqp://{user}:{right}@127.0.0.1:{node.server.port}/?" + _query())
    add = _adder(broker)
    async with broker, running_worker(broker):
        assert await (await add.kiq(2, 3)).result(timeout=10) == 5
    assert_shown_nowhere(shown(caplog) + repr(broker), right)


@pytest.mark.timeout(120)
async def test_aq_worker_with_a_wrong_password_exits_saying_so_without_the_password(
    node: Node,
) -> None:
    user, right = await _user_with_a_secret(node)
    wrong = f"pw-{uuid.uuid4().hex}"
    url = f"amqp://{user}:{wrong}@127.0.0.1:{node.server.port}/?" + _query(publish_timeout=30)
    code, output = await aq_command("worker", "tests.apps.remote:broker", url=url)
    assert code == 2, output
    assert "aq: error: connect: RabbitMQ refused the credentials in the broker URL" in output
    assert_shown_nowhere(output, right, wrong)

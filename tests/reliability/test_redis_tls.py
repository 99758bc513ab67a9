"""TLS to Redis through the broker URL alone: ``rediss://`` with ``cafile``,
``certfile`` and ``keyfile``, the names the RabbitMQ transport takes.

Each test starts a private redis-server on 127.0.0.1 (it is up in milliseconds)
with a TLS port whose certificate a throwaway CA signed, and, where the test needs
one, a plain port too or ``tls-auth-clients yes``. The certificates are made once
for the module (tests/reliability/certs.py), with a second, stranger CA and its
own client certificate for the cases that must be refused.

A TLS mistake must fail ``startup()`` at once with :class:`aq.ConfigurationError`
saying what to check: never retried until ``publish_timeout`` as an outage, and
never answered by falling back to plain text.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest
from redis.asyncio import Redis

import aq
from aq.testing import running_worker
from tests.reliability.certs import Certificates, fails_fast, make_certificates
from tests.reliability.conftest import _free_port, _kill, _until


@dataclass(frozen=True)
class Pki:
    trusted: Certificates  # signed the server's certificate
    stranger: Certificates  # another CA, and a client certificate it signed


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    return Pki(make_certificates(directory / "trusted"), make_certificates(directory / "stranger"))


class TlsRedis:
    """A redis-server whose TLS port serves the trusted CA's server certificate;
    with ``plain`` a plain-text port too; with ``auth_clients`` ("yes") it refuses
    clients without a certificate the trusted CA signed."""

    def __init__(
        self, directory: Path, pki: Pki, *, plain: bool = False, auth_clients: str = "no"
    ) -> None:
        self.directory = directory
        self.pki = pki
        self.tls_port = _free_port()
        self.plain_port = _free_port() if plain else 0
        self.auth_clients = auth_clients
        self.process: asyncio.subprocess.Process | None = None

    def url(self, scheme: str = "rediss", port: int | None = None, /, **options: object) -> str:
        """A broker URL for this server, on a prefix of its own."""
        query = urlencode({"prefix": f"aqtls-{uuid.uuid4().hex[:12]}", **options})
        return f"{scheme}://127.0.0.1:{port or self.tls_port}/0?{query}"

    async def start(self) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            pytest.fail("redis-server is not installed: run `make services`")
        certs = self.pki.trusted
        # fmt: off
        self.process = await asyncio.create_subprocess_exec(
            executable,
            "--bind", "127.0.0.1", "--port", str(self.plain_port),
            "--tls-port", str(self.tls_port),
            "--tls-cert-file", str(certs.cert), "--tls-key-file", str(certs.key),
            "--tls-ca-cert-file", str(certs.ca), "--tls-auth-clients", self.auth_clients,
            "--dir", str(self.directory), "--save", "", "--appendonly", "no",
            "--daemonize", "no", "--logfile", str(self.directory / "redis.log"),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        # fmt: on
        probe = Redis(
            host="127.0.0.1",
            port=self.tls_port,
            ssl=True,
            ssl_ca_certs=str(certs.ca),
            ssl_certfile=str(certs.client_cert),
            ssl_keyfile=str(certs.client_key),
        )
        try:
            await _until(probe.ping)
        finally:
            await probe.aclose()

    async def kill(self) -> None:
        await _kill(self.process)


@pytest.fixture
async def server(tmp_path: Path, pki: Pki) -> AsyncIterator[TlsRedis]:
    """A server with a plain port and a TLS port that asks for no client certificate."""
    started = TlsRedis(tmp_path, pki, plain=True)
    await started.start()
    try:
        yield started
    finally:
        await started.kill()


@pytest.fixture
async def strict_server(tmp_path: Path, pki: Pki) -> AsyncIterator[TlsRedis]:
    """A server with only a TLS port, which refuses clients without a certificate."""
    started = TlsRedis(tmp_path, pki, auth_clients="yes")
    await started.start()
    try:
        yield started
    finally:
        await started.kill()


async def _runs_a_task(url: str) -> None:
    broker = aq.Broker(url)

    @broker.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    async with broker, running_worker(broker):
        assert await (await add.kiq(2, 3)).result(timeout=10) == 5


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "option",
    [
        pytest.param("cafile", id="cafile"),
        pytest.param("ssl_ca_certs", id="redis-py-ssl_ca_certs"),
    ],
)
async def test_a_rediss_url_with_the_servers_ca_runs_a_task_over_tls(
    tmp_path: Path, pki: Pki, option: str
) -> None:
    tls_only = TlsRedis(tmp_path, pki)  # no plain port at all: the result came over TLS
    await tls_only.start()
    try:
        await _runs_a_task(tls_only.url(**{option: pki.trusted.ca}))
    finally:
        await tls_only.kill()


@pytest.mark.timeout(30)
async def test_no_verify_ssl_trusts_a_certificate_no_known_ca_signed(server: TlsRedis) -> None:
    await _runs_a_task(server.url(no_verify_ssl=1))


@pytest.mark.timeout(30)
@pytest.mark.parametrize("which", ["a stranger CA", "the system's CAs"])
async def test_a_ca_that_did_not_sign_the_servers_certificate_fails_at_once(
    server: TlsRedis, pki: Pki, which: str
) -> None:
    options: dict[str, object] = {"publish_timeout": 30}
    if which == "a stranger CA":
        options["cafile"] = pki.stranger.ca
    error = await fails_fast(
        server.url(**options), r"^connect: TLS with Redis failed: .*CERTIFICATE_VERIFY_FAILED"
    )
    assert "check cafile, certfile and keyfile in the broker URL" in str(error)


@pytest.mark.timeout(30)
async def test_tls_to_the_plain_port_fails_saying_it_is_not_the_tls_port(
    server: TlsRedis, pki: Pki
) -> None:
    # Redis waits for a line the TLS handshake never sends, so the handshake times
    # out (after 5 s by default; 1 s here) before aq asks the port what it speaks.
    url = server.url(
        "rediss",
        server.plain_port,
        cafile=pki.trusted.ca,
        publish_timeout=30,
        socket_connect_timeout=1,
    )
    await fails_fast(url, r"TLS with Redis failed: .* answers in plain text.*tls-port")


@pytest.mark.timeout(30)
async def test_plain_text_to_the_tls_port_fails_saying_to_use_rediss(server: TlsRedis) -> None:
    await fails_fast(server.url("redis", publish_timeout=30), r"speaks TLS .*: use a rediss:// URL")


@pytest.mark.timeout(30)
async def test_a_tls_file_that_cannot_be_read_or_used_fails_at_startup_naming_it(
    server: TlsRedis, pki: Pki, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere" / "ca.pem"
    await fails_fast(
        server.url(cafile=missing, publish_timeout=30),
        rf"cannot read the TLS file cafile={missing} in the broker URL: No such file",
    )
    mismatched = {"certfile": pki.trusted.client_cert, "keyfile": pki.trusted.key}
    await fails_fast(
        server.url(cafile=pki.trusted.ca, publish_timeout=30, **mismatched),
        r"TLS with Redis failed: cannot use the certificate, key or CA files .*KEY_VALUES_MISMATCH",
    )
    (junk := tmp_path / "junk.pem").write_text("not a certificate\n")
    await fails_fast(
        server.url(cafile=junk, publish_timeout=30), r"cannot use the certificate, key or CA"
    )


@pytest.mark.timeout(30)
async def test_a_server_that_requires_client_certificates_refuses_a_client_without_one(
    strict_server: TlsRedis, pki: Pki
) -> None:
    await fails_fast(
        strict_server.url(cafile=pki.trusted.ca, publish_timeout=30),
        r"TLS with Redis failed: .*CERTIFICATE_REQUIRED.*certfile",
    )


@pytest.mark.timeout(30)
async def test_a_client_certificate_its_ca_did_not_sign_is_refused(
    strict_server: TlsRedis, pki: Pki
) -> None:
    foreign = {"certfile": pki.stranger.client_cert, "keyfile": pki.stranger.client_key}
    await fails_fast(
        strict_server.url(cafile=pki.trusted.ca, publish_timeout=30, **foreign),
        r"TLS with Redis failed: ",
    )


@pytest.mark.timeout(30)
async def test_a_client_certificate_in_the_url_is_accepted_by_a_server_that_requires_one(
    strict_server: TlsRedis, pki: Pki
) -> None:
    trusted = pki.trusted
    await _runs_a_task(
        strict_server.url(
            cafile=trusted.ca, certfile=trusted.client_cert, keyfile=trusted.client_key
        )
    )

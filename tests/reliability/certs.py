"""Throwaway TLS certificates for the tests that start a server with TLS.

:func:`make_certificates` makes a certificate authority and, signed by it, a
server certificate (for 127.0.0.1 and localhost) and a client certificate (for
servers that ask for one); :func:`make_authority` makes just a CA, a stranger
to the first one, for the tests of a client that trusts the wrong CA. Every
file is written with the openssl command line (the venv has no
``cryptography``) under a directory the test hands in, with EC P-256 keys,
which take milliseconds to make, valid for two days.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import aq

__all__ = ["FAST", "Certificates", "fails_fast", "make_authority", "make_certificates"]

#: Seconds within which a TLS mistake is reported (publish_timeout is 30 in the tests).
FAST = 5.0


@dataclass(frozen=True)
class Certificates:
    ca: Path  # the CA's certificate: what a client (or a server checking clients) trusts
    cert: Path  # the server's certificate, for 127.0.0.1 and localhost
    key: Path
    client_cert: Path  # a client's certificate, for servers that require one
    client_key: Path


_CA_CONFIG = """\
[req]
prompt = no
distinguished_name = dn
x509_extensions = ca
[dn]
CN = aq throwaway test CA
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
"""

_LEAF_CONFIG = """\
[req]
prompt = no
distinguished_name = dn
[dn]
CN = {name}
[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = {usage}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
{names}"""

_NEW_KEY = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"


def _openssl(directory: Path, *commands: str) -> None:
    """Run each openssl ``command`` in ``directory`` (so paths are bare file names)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("the openssl command line is needed to make test certificates")
    for command in commands:
        done = subprocess.run(
            [openssl, *command.split()], cwd=directory, capture_output=True, text=True
        )
        assert done.returncode == 0, f"openssl {command} failed:\n{done.stderr}"


def make_authority(directory: Path) -> Path:
    """A self-signed CA in ``directory`` (``ca.pem``, ``ca.key``); returns its certificate."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ca.cnf").write_text(_CA_CONFIG)
    _openssl(directory, f"req -x509 {_NEW_KEY} -config ca.cnf -days 2 -keyout ca.key -out ca.pem")
    return directory / "ca.pem"


def _issue(directory: Path, stem: str, name: str, usage: str, names: str = "") -> None:
    """``stem.pem`` and ``stem.key``: a certificate for ``name`` signed by the CA in
    ``directory``, for ``usage`` (``serverAuth`` or ``clientAuth``)."""
    config = _LEAF_CONFIG.format(name=name, usage=usage, names=names)
    (directory / f"{stem}.cnf").write_text(config)
    _openssl(
        directory,
        f"req -new {_NEW_KEY} -config {stem}.cnf -keyout {stem}.key -out {stem}.csr",
        f"x509 -req -in {stem}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2"
        f" -extfile {stem}.cnf -extensions leaf -out {stem}.pem",
    )


def make_certificates(directory: Path) -> Certificates:
    """A CA, and a server and a client certificate it signed, in ``directory``."""
    ca = make_authority(directory)
    _issue(
        directory,
        "server",
        "localhost",
        "serverAuth",
        names="subjectAltName = IP:127.0.0.1, DNS:localhost\n",
    )
    _issue(directory, "client", "aq test client", "clientAuth")
    return Certificates(
        ca=ca,
        cert=directory / "server.pem",
        key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
    )


async def fails_fast(url: str, pattern: str) -> aq.ConfigurationError:
    """Start a broker on ``url``; it must fail with a ConfigurationError matching
    ``pattern`` within :data:`FAST` seconds although its publish_timeout allows 30:
    a TLS mistake is not retried, since it cannot fix itself."""
    started = time.monotonic()
    with pytest.raises(aq.ConfigurationError, match=pattern) as caught:
        await aq.Broker(url).startup()
    assert time.monotonic() - started < FAST
    return caught.value

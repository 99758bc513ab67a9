"""Telling a TLS mistake from an outage.

A connection that fails because of how TLS is set up (a certificate that does
not verify, a server that wants a client certificate, TLS spoken to a port
that does not speak it) will fail the same way on every attempt, so a backend
must report it as :class:`aq.ConfigurationError` at once rather than retry it
until a deadline as it does a lost connection. Client libraries wrap the
:mod:`ssl` error in their own connection errors; :func:`tls_problem` finds it
in the chain, and :func:`tls_failure` says what it means and what to check.
"""

from __future__ import annotations

import ssl

__all__ = ["tls_failure", "tls_problem"]

#: OpenSSL's reasons for a failed handshake that no retry will fix: the peer's
#: certificate, our own, or the protocol spoken on the port is wrong.
_SET_UP_REASONS = frozenset(
    {
        "CERTIFICATE_VERIFY_FAILED",
        "WRONG_VERSION_NUMBER",  # TLS spoken to a port that speaks something else
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",  # the server wants a client certificate
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "TLSV1_ALERT_UNKNOWN_CA",  # the server does not trust our certificate's CA
        "SSLV3_ALERT_HANDSHAKE_FAILURE",
        "TLSV1_ALERT_PROTOCOL_VERSION",
        "UNSUPPORTED_PROTOCOL",
        "TLSV1_ALERT_ACCESS_DENIED",
    }
)

#: What the commonest of those reasons mean, in the broker URL's terms.
_MEANINGS = {
    "CERTIFICATE_VERIFY_FAILED": "the server's certificate is not signed by the CA in "
    "cafile (or, without cafile, by one the system trusts)",
    "WRONG_VERSION_NUMBER": "the port does not speak TLS",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the server requires a client certificate: "
    "give certfile and keyfile",
    "TLSV1_ALERT_UNKNOWN_CA": "the server does not trust the CA that signed the client "
    "certificate in certfile",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the server refused the client certificate in certfile",
}


def tls_failure(server: str, problem: BaseException, port: str) -> str:
    """A message for ``problem`` (from :func:`tls_problem`) met connecting to
    ``server``, whose TLS port is called ``port`` in its own documentation."""
    meaning = _MEANINGS.get(getattr(problem, "reason", None) or "")
    return (
        f"TLS with {server} failed: {problem}{f': {meaning}' if meaning else ''} (check "
        f"cafile, certfile and keyfile in the broker URL, and that the port is {port})"
    )


def tls_problem(exc: BaseException) -> BaseException | None:
    """The TLS set-up error behind ``exc`` (itself, its cause or its context, and
    theirs), if any: one that no retry will fix."""
    seen: BaseException | None = exc
    for _ in range(32):  # a chain is short; a cycle must not loop for ever
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        if isinstance(seen, ssl.SSLError) and getattr(seen, "reason", None) in _SET_UP_REASONS:
            return seen
        seen = seen.__cause__ or seen.__context__
    return None

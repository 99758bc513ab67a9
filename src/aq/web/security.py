"""Who may see the dashboard, and which requests may change something.

Authentication is a token (``AQ_DASHBOARD_TOKEN``: sent as ``Authorization:
Bearer``, or entered on the login page, which sets a signed session cookie
good for 12 hours) or HTTP basic auth (``AQ_DASHBOARD_BASIC_AUTH=user:password``). With
neither, the dashboard answers only requests that reached it on a loopback
address, unless it was told that something in front of it checks who asks
(``allow_anonymous=True``).

A request that changes state must be a POST that carries the page's
anti-forgery token in the ``X-AQ-CSRF`` header, and whose ``Origin`` (when the
browser sends one) is the dashboard's own. A page from another site can make
a browser send a POST with its cookies or basic credentials, but not read the
token from our page nor set a custom header without a CORS grant, which the
dashboard never gives. Secrets are compared in constant time and never
logged or echoed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import os
import secrets
import time
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

from aq.errors import ConfigurationError

__all__ = ["Auth", "CSRF_HEADER", "SESSION_COOKIE", "is_loopback"]

ENV_TOKEN: Final = "AQ_DASHBOARD_TOKEN"
ENV_BASIC: Final = "AQ_DASHBOARD_BASIC_AUTH"
CSRF_HEADER: Final = "x-aq-csrf"
SESSION_COOKIE: Final = "aq_dashboard"
#: Seconds a sign-in lasts.
SESSION_TTL: Final = 12 * 3600


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is a loopback address."""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1, on a dual-stack socket
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


@dataclass(frozen=True)
class Auth:
    """How the dashboard checks who asks; see the module docstring.

    Args:
        token: a shared secret, sent as a bearer token or entered at the login page.
        basic: ``(user, password)`` for HTTP basic auth.
    """

    token: str | None = None
    basic: tuple[str, str] | None = None
    #: Signs session cookies and anti-forgery tokens; derived from the token or
    #: the basic credentials (so every process serving the dashboard agrees),
    #: random per process without either.
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    def __post_init__(self) -> None:
        if self.token is not None and len(self.token) < 16:
            raise ConfigurationError(
                f"{ENV_TOKEN} must be at least 16 characters long; make one with "
                "python -c 'import secrets; print(secrets.token_urlsafe())'"
            )
        if self.basic is not None and (not self.basic[0] or len(self.basic[1]) < 8):
            raise ConfigurationError(
                f"{ENV_BASIC} must be user:password, with a password of at least 8 characters"
            )
        secret = self.token or (":".join(self.basic) if self.basic is not None else None)
        if secret is not None:  # every process serving this dashboard agrees on it
            derived = hmac.new(secret.encode(), b"aq-dashboard-key", hashlib.sha256)
            object.__setattr__(self, "key", derived.digest())

    def __repr__(self) -> str:  # never show a secret
        kinds = [k for k, v in (("token", self.token), ("basic", self.basic)) if v is not None]
        return f"Auth({', '.join(kinds) or 'none'})"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Auth:
        """The token or basic credentials set in the environment (or none)."""
        env = os.environ if environ is None else environ
        token = env.get(ENV_TOKEN) or None
        basic_text = env.get(ENV_BASIC) or None
        basic = None
        if basic_text is not None:
            user, colon, password = basic_text.partition(":")
            if not colon:
                raise ConfigurationError(f"{ENV_BASIC} must be user:password")
            basic = (user, password)
        return cls(token=token, basic=basic)

    @property
    def enabled(self) -> bool:
        return self.token is not None or self.basic is not None

    def session(self, now: float | None = None) -> str:
        """A session cookie's value: when it was issued, signed (not the token)."""
        issued = str(int(time.time() if now is None else now))
        return f"{issued}.{self._sign(issued)}"

    def _sign(self, issued: str) -> str:
        return hmac.new(self.key, b"session " + issued.encode(), hashlib.sha256).hexdigest()

    def good_session(self, cookie: str, now: float | None = None) -> bool:
        """Whether ``cookie`` is a session this dashboard issued within :data:`SESSION_TTL`."""
        issued, _, signature = cookie.partition(".")
        if not issued.isdigit() or not _same(signature, self._sign(issued)):
            return False
        age = (time.time() if now is None else now) - int(issued)
        return -60 <= age <= SESSION_TTL

    def csrf(self) -> str:
        """The anti-forgery token the pages carry."""
        return hmac.new(self.key, b"csrf", hashlib.sha256).hexdigest()

    def check_token(self, offered: str) -> bool:
        return self.token is not None and _same(offered, self.token)

    def allows(self, authorization: str | None, cookie: str | None) -> bool:
        """Whether the credentials of a request are good."""
        if self.token is not None:
            if cookie is not None and self.good_session(cookie):
                return True
            scheme, _, value = (authorization or "").partition(" ")
            if scheme.lower() == "bearer" and self.check_token(value.strip()):
                return True
        if self.basic is not None:
            scheme, _, value = (authorization or "").partition(" ")
            if scheme.lower() == "basic":
                try:
                    decoded = base64.b64decode(value.strip(), validate=True)
                except (binascii.Error, ValueError):
                    return False
                user, _, password = decoded.partition(b":")
                good_user = hmac.compare_digest(user, self.basic[0].encode())
                good_password = hmac.compare_digest(password, self.basic[1].encode())
                return good_user and good_password
        return False

    def check_csrf(self, offered: str | None) -> bool:
        return offered is not None and _same(offered, self.csrf())


def _same(offered: str, expected: str) -> bool:
    """Whether two secrets are equal, in constant time (any text offered)."""
    return hmac.compare_digest(offered.encode(errors="replace"), expected.encode())


def host_name(host_header: str) -> str:
    """The host of a ``Host`` header, without its port (``[::1]:8080`` gives ``::1``)."""
    if host_header.startswith("["):
        return host_header[1:].partition("]")[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def same_origin(origin: str | None, host: str | None) -> bool:
    """Whether a request's ``Origin`` header (if any) names the host it was sent to."""
    if origin is None:
        return True  # not sent by a browser that tells; the token still has to match
    if host is None:
        return False
    return urlsplit(origin).netloc.lower() == host.lower()

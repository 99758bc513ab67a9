"""Who may see the dashboard, on its own: tokens, session cookies, basic
credentials, anti-forgery tokens, and the checks on where a request came from."""

from __future__ import annotations

import base64

import pytest

import aq
from aq.web.security import (
    ENV_BASIC,
    ENV_TOKEN,
    SESSION_TTL,
    Auth,
    host_name,
    is_loopback,
    same_origin,
)

TOKEN = "s3cret-token-0123456789"
PASSWORD = "hunter2-hunter2"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# -- tokens ---------------------------------------------------------------------------


def test_a_token_is_accepted_as_a_bearer_or_as_the_session_cookie() -> None:
    auth = Auth(token=TOKEN)
    assert auth.enabled
    assert auth.allows(f"Bearer {TOKEN}", None)
    assert auth.allows(f"bearer  {TOKEN} ", None)
    assert auth.allows(None, auth.session())
    assert auth.allows("Bearer wrong", auth.session())  # the cookie alone is enough
    assert auth.session() != TOKEN
    assert TOKEN not in auth.session()


def test_a_wrong_token_or_cookie_or_none_is_refused() -> None:
    auth = Auth(token=TOKEN)
    assert not auth.allows(f"Bearer {TOKEN}x", None)
    assert not auth.allows(f"Bearer {TOKEN[:-1]}", None)
    assert not auth.allows(f"Token {TOKEN}", None)
    assert not auth.allows(TOKEN, None)
    assert not auth.allows(None, "0" * 64)
    assert not auth.allows(None, TOKEN)  # the cookie holds the session, not the token
    assert not auth.allows(None, "")
    assert not auth.allows("", None)
    assert not auth.allows(None, None)
    assert not auth.allows(basic("admin", TOKEN), None)


def test_check_token() -> None:
    auth = Auth(token=TOKEN)
    assert auth.check_token(TOKEN)
    assert not auth.check_token(TOKEN.upper())
    assert not auth.check_token("")
    assert not Auth().check_token("")
    assert not Auth().check_token(TOKEN)


def test_the_anti_forgery_token_is_stable_and_checked() -> None:
    auth = Auth(token=TOKEN)
    csrf = auth.csrf()
    assert csrf == auth.csrf()
    assert csrf != auth.session()
    assert auth.check_csrf(csrf)
    assert not auth.check_csrf(None)
    assert not auth.check_csrf("")
    assert not auth.check_csrf(csrf[:-1])
    assert not auth.check_csrf(TOKEN)
    anonymous = Auth()
    assert anonymous.check_csrf(anonymous.csrf())
    assert not anonymous.check_csrf(csrf)


def test_a_cookie_or_anti_forgery_token_that_is_not_ascii_is_refused() -> None:
    auth = Auth(token=TOKEN)
    assert not auth.allows(None, "caf\xe9")
    assert not auth.check_csrf("caf\xe9")


def test_a_bearer_token_that_is_not_ascii_is_refused() -> None:
    auth = Auth(token=TOKEN)
    assert not auth.allows("Bearer caf\xe9", None)


def test_the_key_is_derived_from_the_credentials_and_random_without() -> None:
    one, two = Auth(token=TOKEN), Auth(token=TOKEN)
    assert one.session() == two.session()
    assert one.csrf() == two.csrf()
    other = Auth(token=TOKEN + "!")
    assert other.session() != one.session()
    assert other.csrf() != one.csrf()
    assert not other.allows(None, one.session())
    first, second = Auth(), Auth()
    assert first.session() != second.session()
    assert first.csrf() != second.csrf()
    # Basic credentials key it too: every process serving the dashboard agrees.
    first_basic, second_basic = Auth(basic=("admin", PASSWORD)), Auth(basic=("admin", PASSWORD))
    assert first_basic.csrf() == second_basic.csrf()
    assert Auth(basic=("admin", PASSWORD + "!")).csrf() != first_basic.csrf()


# -- basic credentials ----------------------------------------------------------------


def test_good_basic_credentials_are_accepted() -> None:
    auth = Auth(basic=("admin", PASSWORD))
    assert auth.enabled
    assert auth.allows(basic("admin", PASSWORD), None)
    assert auth.allows("basic " + basic("admin", PASSWORD).split()[1], None)


def test_wrong_basic_credentials_are_refused() -> None:
    auth = Auth(basic=("admin", PASSWORD))
    assert not auth.allows(basic("admin", PASSWORD + "x"), None)
    assert not auth.allows(basic("admin", PASSWORD[:-1]), None)
    assert not auth.allows(basic("root", PASSWORD), None)
    assert not auth.allows(basic("", PASSWORD), None)
    assert not auth.allows(basic("admin", ""), None)
    assert not auth.allows(f"Bearer {PASSWORD}", None)
    assert not auth.allows(None, None)
    assert not auth.allows(None, auth.session())  # no session cookie without a token


def test_malformed_basic_credentials_are_refused() -> None:
    auth = Auth(basic=("admin", PASSWORD))
    assert not auth.allows("Basic not base64!", None)
    assert not auth.allows("Basic YWRtaW4", None)  # bad padding
    assert not auth.allows("Basic caf\xe9", None)
    assert not auth.allows("Basic ", None)
    no_colon = base64.b64encode(f"admin{PASSWORD}".encode()).decode()
    assert not auth.allows(f"Basic {no_colon}", None)


def test_a_password_with_a_colon_is_accepted_whole() -> None:
    auth = Auth(basic=("admin", "pass:word:1"))
    assert auth.allows(basic("admin", "pass:word:1"), None)
    assert not auth.allows(basic("admin", "pass"), None)


def test_a_token_and_basic_credentials_both_work() -> None:
    auth = Auth(token=TOKEN, basic=("admin", PASSWORD))
    assert auth.allows(f"Bearer {TOKEN}", None)
    assert auth.allows(basic("admin", PASSWORD), None)
    assert auth.allows(None, auth.session())
    assert not auth.allows(basic("admin", TOKEN), None)


# -- weak secrets ---------------------------------------------------------------------


def test_a_short_token_is_refused_without_showing_it() -> None:
    short = "sh0rt-s3cret"
    with pytest.raises(aq.ConfigurationError, match=ENV_TOKEN) as caught:
        Auth(token=short)
    assert short not in str(caught.value)
    assert Auth(token="x" * 16).enabled


@pytest.mark.parametrize(
    "credentials",
    [("admin", "pw-1234"), ("admin", ""), ("", PASSWORD)],
    ids=["short", "empty", "no-user"],
)
def test_weak_basic_credentials_are_refused_without_showing_them(
    credentials: tuple[str, str],
) -> None:
    with pytest.raises(aq.ConfigurationError, match=ENV_BASIC) as caught:
        Auth(basic=credentials)
    if credentials[1]:
        assert credentials[1] not in str(caught.value)
    assert Auth(basic=("admin", "8chars!!")).enabled


def test_the_repr_never_shows_a_secret() -> None:
    auth = Auth(token=TOKEN, basic=("admin", PASSWORD))
    for text in (repr(auth), str(auth), f"{auth}"):
        assert TOKEN not in text
        assert PASSWORD not in text
        assert auth.key.hex() not in text
        assert repr(auth.key) not in text
    assert repr(auth) == "Auth(token, basic)"
    assert repr(Auth()) == "Auth(none)"


# -- from the environment -------------------------------------------------------------


def test_from_env_reads_a_token() -> None:
    auth = Auth.from_env({ENV_TOKEN: TOKEN})
    assert auth.token == TOKEN
    assert auth.basic is None
    assert auth.allows(f"Bearer {TOKEN}", None)


def test_from_env_reads_basic_credentials() -> None:
    auth = Auth.from_env({ENV_BASIC: f"admin:{PASSWORD}"})
    assert auth.token is None
    assert auth.basic == ("admin", PASSWORD)
    assert auth.allows(basic("admin", PASSWORD), None)


def test_from_env_refuses_basic_credentials_without_a_colon() -> None:
    with pytest.raises(aq.ConfigurationError, match="user:password") as caught:
        Auth.from_env({ENV_BASIC: f"admin{PASSWORD}"})
    assert PASSWORD not in str(caught.value)


def test_from_env_with_nothing_set_is_not_enabled() -> None:
    assert not Auth.from_env({}).enabled
    assert not Auth.from_env({ENV_TOKEN: "", ENV_BASIC: ""}).enabled
    assert not Auth.from_env({"AQ_SOMETHING_ELSE": TOKEN}).enabled


# -- where a request came from --------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "127.5.0.1", "::1", "[::1]", "localhost"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "10.0.0.1", "192.168.1.1", "::", "example.com", "localhost.evil", ""]
)
def test_hosts_that_are_not_loopback(host: str) -> None:
    assert not is_loopback(host)


def test_a_request_without_an_origin_is_same_origin() -> None:
    assert same_origin(None, "dash.example.com")
    assert same_origin(None, None)


def test_a_matching_origin_is_same_origin() -> None:
    assert same_origin("https://dash.example.com", "dash.example.com")
    assert same_origin("http://Dash.Example.COM:8080", "dash.example.com:8080")
    assert same_origin("http://127.0.0.1:8000", "127.0.0.1:8000")
    assert same_origin("http://[::1]:8000", "[::1]:8000")


def test_another_origin_or_no_host_is_refused() -> None:
    assert not same_origin("https://evil.example.com", "dash.example.com")
    assert not same_origin("https://dash.example.com.evil.net", "dash.example.com")
    assert not same_origin("http://dash.example.com:8081", "dash.example.com:8080")
    assert not same_origin("http://dash.example.com", "dash.example.com:8080")
    assert not same_origin("null", "dash.example.com")
    assert not same_origin("https://dash.example.com", None)


@pytest.mark.parametrize(
    ("header", "host"),
    [
        ("127.0.0.1:8080", "127.0.0.1"),
        ("localhost", "localhost"),
        ("[::1]:8080", "::1"),
        ("[::1]", "::1"),
        ("example.com:80", "example.com"),
    ],
)
def test_the_host_of_a_host_header_loses_its_port(header: str, host: str) -> None:
    assert host_name(header) == host


def test_an_ipv4_loopback_address_mapped_into_ipv6_is_loopback() -> None:
    assert is_loopback("::ffff:127.0.0.1")
    assert not is_loopback("::ffff:10.0.0.1")


def test_a_session_lasts_twelve_hours_and_cannot_be_forged() -> None:
    auth = Auth(token=TOKEN)
    issued = auth.session(now=1_000_000.0)
    assert auth.good_session(issued, now=1_000_000.0 + SESSION_TTL)
    assert not auth.good_session(issued, now=1_000_000.0 + SESSION_TTL + 1)
    stamp, signature = issued.split(".")
    assert not auth.good_session(f"{int(stamp) + 3600}.{signature}", now=1_000_000.0)
    assert not auth.good_session(f"x.{signature}", now=1_000_000.0)
    assert not auth.good_session(issued.replace(".", ""), now=1_000_000.0)
    assert TOKEN not in issued

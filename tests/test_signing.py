"""Specification of aq.signing: the Keyring of HMAC-SHA256 keys, and how a broker gets one.

A keyring signs with one key and accepts any of its keys; it is built from
arguments or from ``AQ_SIGNING_KEYS`` / ``AQ_SIGN_WITH`` / ``AQ_SIGNING_REQUIRED``;
and no error, repr or str it produces ever holds a secret.
"""

from __future__ import annotations

import hmac
import random
import traceback
from collections.abc import Mapping
from typing import Any

import pytest

import aq
from aq.signing import Keyring

#: Distinctive, so that finding it in any text is certain to mean a leak.
SECRET = "TOP-SECRET-do-not-print-0123456789-abcdef"
OTHER_SECRET = "OTHER-SECRET-do-not-print-9876543210-fedcba"
SHORT_SECRET = "SHORT-SECRET-xyz"  # 16 bytes


def everything_said_about(exc: BaseException) -> str:
    """All the text an error could show: its str, its repr, and its whole traceback."""
    return "\n".join([str(exc), repr(exc), *traceback.format_exception(exc)])


@pytest.fixture
def no_signing_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("AQ_SIGNING_KEYS", "AQ_SIGN_WITH", "AQ_SIGNING_REQUIRED"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# --- validation -------------------------------------------------------------------------------

BAD_KEYRINGS: list[tuple[Any, Any, dict[str, Any], str]] = [
    ({}, None, {}, "signing_keys must map key ids to secrets, e.g."),
    ([("k", SECRET)], None, {}, "signing_keys must map key ids to secrets"),
    ({"": SECRET}, None, {}, "the id of signing key number 1 is not 1 to 24 of the characters"),
    ({"k" * 25: SECRET}, None, {}, "is not 1 to 24 of the characters A-Z a-z 0-9"),
    ({"a": SECRET, "my key": SECRET}, "a", {}, "the id of signing key number 2 is not 1 to 24"),
    ({"clé": SECRET}, None, {}, "the id of signing key number 1 is not 1 to 24"),
    ({42: SECRET}, None, {}, "the id of signing key number 1 is not 1 to 24"),
    ({b"k": SECRET}, None, {}, "the id of signing key number 1 is not 1 to 24"),
    ({"k": SHORT_SECRET}, None, {}, "'k' is 16 bytes; use at least 32 random bytes"),
    ({"k": SECRET[:31]}, None, {}, "'k' is 31 bytes; use at least 32 random bytes"),
    ({"k": 1234567890}, None, {}, "the secret of signing key 'k' must be str or bytes"),
    ({"a": SECRET, "b": OTHER_SECRET}, None, {}, "say which one signs with sign_with=KEY_ID"),
    ({"a": SECRET}, "b", {}, "sign_with='b' names no key in signing_keys \\(their ids: a\\)"),
    ({"a": SECRET}, None, {"required": "yes"}, "require_signatures must be True or False"),
]
BAD_KEYRING_IDS = [
    "no-keys",
    "not-a-mapping",
    "empty-id",
    "long-id",
    "id-with-space",
    "non-ascii-id",
    "int-id",
    "bytes-id",
    "short-secret",
    "31-byte-secret",
    "int-secret",
    "two-keys-no-sign-with",
    "sign-with-unknown",
    "required-not-bool",
]


@pytest.mark.parametrize(
    ("keys", "sign_with", "options", "hint"), BAD_KEYRINGS, ids=BAD_KEYRING_IDS
)
def test_a_bad_keyring_says_what_to_change(
    keys: Any, sign_with: Any, options: dict[str, Any], hint: str
) -> None:
    with pytest.raises(aq.ConfigurationError, match=hint):
        Keyring(keys, sign_with, **options)


@pytest.mark.parametrize(
    ("keys", "sign_with", "options", "hint"), BAD_KEYRINGS, ids=BAD_KEYRING_IDS
)
def test_a_bad_keyring_error_never_shows_a_secret(
    keys: Any, sign_with: Any, options: dict[str, Any], hint: str
) -> None:
    with pytest.raises(aq.ConfigurationError) as caught:
        Keyring(keys, sign_with, **options)

    said = everything_said_about(caught.value)
    for secret in (SECRET, OTHER_SECRET, SHORT_SECRET, SECRET[:31]):
        assert secret not in said


def test_a_short_secret_error_says_how_to_make_a_good_one() -> None:
    with pytest.raises(aq.ConfigurationError, match=r"secrets\.token_urlsafe\(32\)"):
        Keyring({"k": SHORT_SECRET})


@pytest.mark.parametrize("secret", [SECRET, SECRET.encode()], ids=["str", "bytes"])
def test_a_keyrings_repr_and_str_name_key_ids_and_never_secrets(secret: str | bytes) -> None:
    keyring = Keyring({"2026-06": secret, "2026-12": OTHER_SECRET}, "2026-12")

    for text in (repr(keyring), str(keyring)):
        assert "2026-06" in text
        assert "2026-12" in text
        assert SECRET not in text
        assert OTHER_SECRET not in text


def test_a_keyring_with_one_key_signs_with_it() -> None:
    assert Keyring({"only": SECRET}).sign_with == "only"


def test_a_keyring_lists_its_key_ids_sorted() -> None:
    assert Keyring({"b": SECRET, "a": OTHER_SECRET}, "b").key_ids == ["a", "b"]


def test_a_keyring_requires_signatures_by_default() -> None:
    assert Keyring({"k": SECRET}).required is True


def test_a_key_id_may_use_letters_digits_and_dot_underscore_colon_dash() -> None:
    key_id = "Az09._:-" + "x" * 16  # 24 characters, the most

    assert Keyring({key_id: SECRET}).key_ids == [key_id]


# --- from the environment ---------------------------------------------------------------------


def test_from_env_without_keys_is_none(no_signing_env: pytest.MonkeyPatch) -> None:
    assert Keyring.from_env() is None


@pytest.mark.parametrize("value", ["", "   "])
def test_from_env_with_blank_keys_is_none(no_signing_env: pytest.MonkeyPatch, value: str) -> None:
    no_signing_env.setenv("AQ_SIGNING_KEYS", value)

    assert Keyring.from_env() is None


def test_from_env_reads_keys_and_the_one_to_sign_with(no_signing_env: pytest.MonkeyPatch) -> None:
    no_signing_env.setenv("AQ_SIGNING_KEYS", f"a={SECRET},b={OTHER_SECRET}")
    no_signing_env.setenv("AQ_SIGN_WITH", "b")

    keyring = Keyring.from_env()

    assert keyring is not None
    assert (keyring.key_ids, keyring.sign_with, keyring.required) == (["a", "b"], "b", True)
    assert keyring.sign(b"data") == hmac.digest(OTHER_SECRET.encode(), b"data", "sha256")


def test_from_env_ignores_spaces_around_entries(no_signing_env: pytest.MonkeyPatch) -> None:
    no_signing_env.setenv("AQ_SIGNING_KEYS", f" a={SECRET} , b={OTHER_SECRET} ")
    no_signing_env.setenv("AQ_SIGN_WITH", "a")

    keyring = Keyring.from_env()

    assert keyring is not None
    assert keyring.sign(b"data") == hmac.digest(SECRET.encode(), b"data", "sha256")


def test_from_env_reads_a_mapping_given_instead_of_the_environment(
    no_signing_env: pytest.MonkeyPatch,
) -> None:
    environ: Mapping[str, str] = {"AQ_SIGNING_KEYS": f"a={SECRET}"}

    keyring = Keyring.from_env(environ)

    assert keyring is not None
    assert keyring.key_ids == ["a"]


@pytest.mark.parametrize(
    ("value", "required"),
    [
        ("false", False),
        ("FALSE", False),
        ("0", False),
        ("no", False),
        ("true", True),
        ("1", True),
        ("yes", True),
    ],
)
def test_from_env_reads_whether_signatures_are_required(
    no_signing_env: pytest.MonkeyPatch, value: str, required: bool
) -> None:
    no_signing_env.setenv("AQ_SIGNING_KEYS", f"a={SECRET}")
    no_signing_env.setenv("AQ_SIGNING_REQUIRED", value)

    keyring = Keyring.from_env()

    assert keyring is not None
    assert keyring.required is required


def test_from_env_refuses_a_required_flag_that_is_not_true_or_false(
    no_signing_env: pytest.MonkeyPatch,
) -> None:
    no_signing_env.setenv("AQ_SIGNING_KEYS", f"a={SECRET}")
    no_signing_env.setenv("AQ_SIGNING_REQUIRED", "maybe")

    with pytest.raises(aq.ConfigurationError, match="AQ_SIGNING_REQUIRED must be true or false"):
        Keyring.from_env()


@pytest.mark.parametrize(
    ("value", "entry"),
    [
        (f"{SECRET}", 1),
        (f"={SECRET}", 1),
        ("a=", 1),
        (f"a={SECRET},{OTHER_SECRET}", 2),
        (f"a={SECRET},b-{OTHER_SECRET}", 2),
        (f"a={SECRET},,b={OTHER_SECRET}", 2),
        (f"a={SECRET},b={OTHER_SECRET},", 3),
    ],
    ids=["no-id", "empty-id", "empty-secret", "no-equals", "dash-for-equals", "empty", "trailing"],
)
def test_from_env_names_the_variable_and_entry_that_is_malformed(
    no_signing_env: pytest.MonkeyPatch, value: str, entry: int
) -> None:
    no_signing_env.setenv("AQ_SIGNING_KEYS", value)

    with pytest.raises(aq.ConfigurationError, match=f"AQ_SIGNING_KEYS: entry {entry} ") as caught:
        Keyring.from_env()

    said = everything_said_about(caught.value)
    assert SECRET not in said
    assert OTHER_SECRET not in said


def test_from_env_with_several_keys_and_no_sign_with_says_to_choose(
    no_signing_env: pytest.MonkeyPatch,
) -> None:
    no_signing_env.setenv("AQ_SIGNING_KEYS", f"a={SECRET},b={OTHER_SECRET}")

    with pytest.raises(aq.ConfigurationError, match="sign_with") as caught:
        Keyring.from_env()
    assert SECRET not in everything_said_about(caught.value)


def test_from_env_with_a_short_secret_never_shows_it(no_signing_env: pytest.MonkeyPatch) -> None:
    no_signing_env.setenv("AQ_SIGNING_KEYS", f"a={SHORT_SECRET}")

    with pytest.raises(aq.ConfigurationError, match="'a' is 16 bytes") as caught:
        Keyring.from_env()
    assert SHORT_SECRET not in everything_said_about(caught.value)


# --- signing and verifying --------------------------------------------------------------------

_bytes = random.Random(0).randbytes


@pytest.mark.parametrize("key_size", [32, 63, 64, 65, 200])
@pytest.mark.parametrize("data", [b"", b"x", _bytes(64), _bytes(100_000)], ids=len)
def test_sign_is_the_hmac_sha256_of_the_data_under_the_signing_key(
    key_size: int, data: bytes
) -> None:
    key = _bytes(key_size)

    assert Keyring({"k": key}).sign(data) == hmac.digest(key, data, "sha256")


def test_a_str_secret_is_used_as_its_utf_8_bytes() -> None:
    secret = "clé-" + "s" * 40

    assert Keyring({"k": secret}).sign(b"data") == hmac.digest(secret.encode(), b"data", "sha256")


@pytest.mark.parametrize("wrap", [bytearray, memoryview], ids=["bytearray", "memoryview"])
def test_sign_takes_any_bytes_like_data(wrap: type[bytearray] | type[memoryview]) -> None:
    keyring = Keyring({"k": SECRET})

    assert keyring.sign(wrap(b"data")) == keyring.sign(b"data")


def test_sign_uses_the_key_named_by_sign_with() -> None:
    keyring = Keyring({"a": SECRET, "b": OTHER_SECRET}, "a")

    assert keyring.sign(b"data") == hmac.digest(SECRET.encode(), b"data", "sha256")


def test_verify_accepts_the_mac_of_the_data() -> None:
    keyring = Keyring({"k": SECRET})

    keyring.verify("k", b"data", keyring.sign(b"data"))


def test_verify_accepts_a_mac_under_any_key_of_the_keyring() -> None:
    keyring = Keyring({"old": SECRET, "new": OTHER_SECRET}, "new")

    keyring.verify("old", b"data", hmac.digest(SECRET.encode(), b"data", "sha256"))


def test_verify_compares_macs_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    keyring = Keyring({"k": SECRET})
    mac = keyring.sign(b"data")
    compared: list[tuple[bytes, bytes]] = []
    real_compare = hmac.compare_digest

    def recording_compare(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real_compare(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording_compare)

    keyring.verify("k", b"data", mac)
    with pytest.raises(aq.UntrustedMessage):
        keyring.verify("k", b"data", bytes(32))

    assert compared == [(mac, mac), (mac, bytes(32))]


@pytest.mark.parametrize(
    "mac",
    [bytes(32), hmac.digest(OTHER_SECRET.encode(), b"data", "sha256"), b"", b"\x00" * 33],
    ids=["zeros", "other-key", "empty", "too-long"],
)
def test_verify_refuses_a_wrong_mac(mac: bytes) -> None:
    with pytest.raises(aq.UntrustedMessage, match="bad signature \\(key id 'k'\\)"):
        Keyring({"k": SECRET}).verify("k", b"data", mac)


def test_verify_refuses_the_mac_of_other_data() -> None:
    keyring = Keyring({"k": SECRET})

    with pytest.raises(aq.UntrustedMessage, match="bad signature"):
        keyring.verify("k", b"data", keyring.sign(b"date"))


def test_verify_refuses_a_mac_claimed_by_another_key_id_of_the_keyring() -> None:
    keyring = Keyring({"a": SECRET, "b": OTHER_SECRET}, "a")

    with pytest.raises(aq.UntrustedMessage, match="key id 'b'"):
        keyring.verify("b", b"data", keyring.sign(b"data"))


def test_verify_refuses_an_unknown_key_id_naming_it_and_the_known_ones() -> None:
    keyring = Keyring({"a": SECRET, "b": OTHER_SECRET}, "a")

    with pytest.raises(aq.UntrustedMessage, match=r"key id 'zz'.*it accepts a, b") as caught:
        keyring.verify("zz", b"data", keyring.sign(b"data"))
    assert SECRET not in everything_said_about(caught.value)


# --- a broker's keyring and codec options -----------------------------------------------------


def test_a_broker_without_keys_signs_nothing(no_signing_env: pytest.MonkeyPatch) -> None:
    assert aq.Broker("memory://").codec.keyring is None


def test_a_broker_takes_its_keys_from_the_environment_when_given_none(
    no_signing_env: pytest.MonkeyPatch,
) -> None:
    no_signing_env.setenv("AQ_SIGNING_KEYS", f"a={SECRET},b={OTHER_SECRET}")
    no_signing_env.setenv("AQ_SIGN_WITH", "b")
    no_signing_env.setenv("AQ_SIGNING_REQUIRED", "false")

    keyring = aq.Broker("memory://").codec.keyring

    assert keyring is not None
    assert (keyring.key_ids, keyring.sign_with, keyring.required) == (["a", "b"], "b", False)


def test_a_brokers_own_keys_win_over_the_environments(no_signing_env: pytest.MonkeyPatch) -> None:
    no_signing_env.setenv("AQ_SIGNING_KEYS", f"env={SECRET}")

    keyring = aq.Broker("memory://", signing_keys={"given": OTHER_SECRET}).codec.keyring

    assert keyring is not None
    assert keyring.key_ids == ["given"]


def test_a_broker_passes_sign_with_and_require_signatures_to_its_keyring(
    no_signing_env: pytest.MonkeyPatch,
) -> None:
    broker = aq.Broker(
        "memory://",
        signing_keys={"a": SECRET, "b": OTHER_SECRET},
        sign_with="a",
        require_signatures=False,
    )

    assert broker.codec.keyring is not None
    assert (broker.codec.keyring.sign_with, broker.codec.keyring.required) == ("a", False)


def test_a_broker_with_sign_with_and_no_keys_is_a_configuration_error(
    no_signing_env: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(aq.ConfigurationError, match="give signing_keys too"):
        aq.Broker("memory://", sign_with="a")


def test_a_broker_with_a_bad_key_fails_at_construction(no_signing_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(aq.ConfigurationError, match="use at least 32 random bytes") as caught:
        aq.Broker("memory://", signing_keys={"k": SHORT_SECRET})
    assert SHORT_SECRET not in everything_said_about(caught.value)


def test_a_broker_with_an_unknown_compression_fails_at_construction() -> None:
    with pytest.raises(
        aq.ConfigurationError, match="compression must be 'zstd', 'zlib' or 'none', not 'bogus'"
    ):
        aq.Broker("memory://", compression="bogus")


def test_a_broker_with_an_unknown_serializer_fails_at_construction() -> None:
    with pytest.raises(
        aq.ConfigurationError, match="unknown serializer 'bogus': use 'json', 'msgpack' or a"
    ):
        aq.Broker("memory://", serializer="bogus")


def test_a_task_with_an_unknown_compression_fails_at_decoration() -> None:
    broker = aq.Broker("memory://")

    with pytest.raises(aq.ConfigurationError, match=r"compression must be .* not 'bogus'"):

        @broker.task(compression="bogus")
        async def job() -> None:
            return None


def test_a_call_with_an_unknown_compression_fails_at_options() -> None:
    broker = aq.Broker("memory://")

    @broker.task
    async def job() -> None:
        return None

    with pytest.raises(aq.ConfigurationError, match=r"compression must be .* not 'bogus'"):
        job.options(compression="bogus")


def test_a_secret_written_where_the_id_belongs_is_never_echoed() -> None:
    with pytest.raises(aq.ConfigurationError) as caught:
        Keyring.from_env({"AQ_SIGNING_KEYS": f"{SECRET}=2026-12"})
    assert SECRET not in str(caught.value)
    assert "id first" in str(caught.value)


def test_a_secret_given_as_sign_with_is_never_echoed() -> None:
    with pytest.raises(aq.ConfigurationError) as caught:
        Keyring({"k": SECRET}, sign_with=SECRET)
    assert SECRET not in str(caught.value)


def test_signatures_required_without_keys_fail_at_start_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AQ_SIGNING_KEYS", raising=False)
    with pytest.raises(aq.ConfigurationError, match="no signing keys"):
        aq.Broker("memory://", require_signatures=True)
    monkeypatch.setenv("AQ_SIGNING_REQUIRED", "true")
    with pytest.raises(aq.ConfigurationError, match="no signing keys"):
        aq.Broker("memory://")

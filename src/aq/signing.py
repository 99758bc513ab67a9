"""Signing keys: which sign what this process sends, which it accepts, and the MAC.

A :class:`Keyring` holds HMAC-SHA256 keys by key id. It signs with one of them
(``sign_with``) and accepts a signature made with any of them, which is how
keys rotate without downtime: give every process the new key too, then sign
with it, then retire the old one (docs/security.md). With ``required`` (the
default), whatever arrives unsigned is refused; a process rolling signing out
to a running cluster may accept unsigned messages for a while with
``required=False``, still refusing bad signatures.

Keys never leave this module in text: no repr, log line or error names more
than a key id. Comparisons are constant-time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from typing import Any, Final, TypeAlias

from aq.errors import ConfigurationError, UntrustedMessage

__all__ = [
    "ENV_KEYS",
    "ENV_REQUIRED",
    "ENV_SIGN_WITH",
    "MAC_SIZE",
    "MAX_KEY_ID",
    "MIN_KEY_BYTES",
    "Keyring",
]

Buffer: TypeAlias = bytes | bytearray | memoryview

#: The environment variables a :class:`Keyring` can be read from.
ENV_KEYS: Final = "AQ_SIGNING_KEYS"
ENV_SIGN_WITH: Final = "AQ_SIGN_WITH"
ENV_REQUIRED: Final = "AQ_SIGNING_REQUIRED"

#: Bytes of an HMAC-SHA256.
MAC_SIZE: Final = 32
#: The shortest key accepted: as many bytes as the MAC, as RFC 2104 advises.
MIN_KEY_BYTES: Final = 32
#: Key ids are short, so that a secret (32 bytes or more) given where an id
#: belongs is refused as an id, and never echoed in an error.
MAX_KEY_ID: Final = 24
_KEY_ID = re.compile(rf"[A-Za-z0-9._:-]{{1,{MAX_KEY_ID}}}")
_GENERATE = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


class Keyring:
    """HMAC-SHA256 keys by id: one signs, all are accepted.

    Args:
        keys: key id -> secret (``str`` is taken as UTF-8). Ids are 1 to 24 of
            ``A-Z a-z 0-9 . _ : -``; secrets at least 32 bytes.
        sign_with: the id of the key that signs; may be left out when there
            is one key.
        required: refuse unsigned messages (the default).

    Raises:
        aq.ConfigurationError: no keys, a bad id, a short secret, or
            ``sign_with`` missing or naming no key.
    """

    __slots__ = ("_macs", "_signer", "required", "sign_with")

    def __init__(
        self,
        keys: Mapping[str, str | bytes],
        sign_with: str | None = None,
        *,
        required: bool = True,
    ) -> None:
        if not isinstance(keys, Mapping) or not keys:
            raise ConfigurationError(
                "signing_keys must map key ids to secrets, e.g. {'2026-12': secret}"
            )
        self._macs: dict[str, tuple[Any, Any]] = {}
        for number, (key_id, secret) in enumerate(keys.items(), 1):
            checked = _check_id(number, key_id)  # first: a secret given as an id is not echoed
            self._macs[checked] = _pads(_check_secret(checked, secret))
        if sign_with is None:
            if len(keys) > 1:
                raise ConfigurationError(
                    "several signing keys: say which one signs with sign_with=KEY_ID "
                    f"(one of {', '.join(sorted(self._macs))})"
                )
            sign_with = next(iter(self._macs))
        if sign_with not in self._macs:
            named = repr(sign_with) if _KEY_ID.fullmatch(str(sign_with)) else "(not an id)"
            raise ConfigurationError(
                f"sign_with={named} names no key in signing_keys "
                f"(their ids: {', '.join(sorted(self._macs))})"
            )
        if not isinstance(required, bool):
            raise ConfigurationError(f"require_signatures must be True or False, not {required!r}")
        self.sign_with: str = sign_with
        self._signer = self._macs[sign_with]
        self.required = required

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, required: bool | None = None
    ) -> Keyring | None:
        """The keyring described by ``AQ_SIGNING_KEYS`` (``ID=SECRET`` pairs
        separated by commas), ``AQ_SIGN_WITH`` and ``AQ_SIGNING_REQUIRED``
        (``true`` or ``false``; ``required``, when given, wins), or ``None``
        when no keys are set.

        Raises:
            aq.ConfigurationError: a variable is malformed (the message names it,
                never a secret).
        """
        env = os.environ if environ is None else environ
        text = env.get(ENV_KEYS, "").strip()
        if not text:
            return None
        keys: dict[str, str] = {}
        for number, pair in enumerate(text.split(","), 1):
            key_id, sep, secret = pair.strip().partition("=")
            if not sep or not key_id or not secret:
                raise ConfigurationError(
                    f"{ENV_KEYS}: entry {number} is not ID=SECRET (write "
                    f"{ENV_KEYS}='2026-12=SECRET,2026-06=OLDSECRET')"
                )
            keys[key_id] = secret
        if required is None:
            flag = _env_flag(env)
            required = True if flag is None else flag
        return cls(keys, env.get(ENV_SIGN_WITH) or None, required=required)

    @classmethod
    def configure(
        cls, keys: Mapping[str, str | bytes] | None, sign_with: str | None, required: bool | None
    ) -> Keyring | None:
        """The keys given (``aq.Broker(signing_keys=...)``), else those of the
        environment (:meth:`from_env`), else none; ``required`` unless
        ``require_signatures`` says otherwise.

        Raises:
            aq.ConfigurationError: as for the constructor, or ``sign_with`` without keys.
        """
        if keys is None:
            if sign_with is not None:
                raise ConfigurationError(
                    "sign_with names a key of signing_keys: give signing_keys too"
                )
            found = cls.from_env(required=required)
            if found is None and (required or _env_flag() is True):
                raise ConfigurationError(
                    f"signatures are required, and there are no signing keys: give "
                    f"signing_keys=... or set {ENV_KEYS}"
                )
            return found
        return cls(keys, sign_with, required=True if required is None else required)

    @property
    def key_ids(self) -> list[str]:
        """The ids of the accepted keys, sorted."""
        return sorted(self._macs)

    def sign(self, data: Buffer, more: Buffer = b"") -> bytes:
        """The HMAC-SHA256, under the signing key, of ``data`` followed by ``more``."""
        return _mac(self._signer, data, more)

    def verify_signer(self, data: Buffer, signature: bytes) -> None:
        """:meth:`verify` for the signing key: the commonest case, made short.

        Raises:
            aq.UntrustedMessage: the signature does not match.
        """
        if not hmac.compare_digest(_mac(self._signer, data), signature):
            raise UntrustedMessage(
                f"bad signature (key id {self.sign_with!r}): the message was altered"
            )

    def verify(self, key_id: str, data: Buffer, signature: bytes) -> None:
        """Check that ``signature`` is the MAC of ``data`` under key ``key_id``.

        Raises:
            aq.UntrustedMessage: the key id is unknown, or the signature does not match.
        """
        pads = self._macs.get(key_id)
        if pads is None:
            raise UntrustedMessage(
                f"signed with key id {key_id!r}, which this process does not have "
                f"(it accepts {', '.join(self.key_ids)})"
            )
        if not hmac.compare_digest(_mac(pads, data), signature):
            raise UntrustedMessage(f"bad signature (key id {key_id!r}): the message was altered")

    def __repr__(self) -> str:
        keys = ", ".join(self.key_ids)
        return f"<Keyring sign_with={self.sign_with!r} keys=[{keys}] required={self.required}>"


def _env_flag(environ: Mapping[str, str] | None = None) -> bool | None:
    """``AQ_SIGNING_REQUIRED`` as a flag, or ``None`` when it is not set.

    Raises:
        aq.ConfigurationError: it is set to something else than true or false.
    """
    env = os.environ if environ is None else environ
    flag = env.get(ENV_REQUIRED, "").strip().lower()
    if not flag:
        return None
    if flag not in ("true", "false", "1", "0", "yes", "no"):
        raise ConfigurationError(f"{ENV_REQUIRED} must be true or false, not {flag!r}")
    return flag in ("true", "1", "yes")


def _pads(key: bytes) -> tuple[Any, Any]:
    """SHA-256 states that have hashed the key XOR ipad and XOR opad (RFC 2104):
    copying them saves hashing two blocks per message, and Python's ``hmac``
    objects cost more per call than the hashing."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    inner = hashlib.sha256(key.translate(_IPAD))
    outer = hashlib.sha256(key.translate(_OPAD))
    return inner.copy, outer.copy  # bound: one lookup less per message


def _mac(pads: tuple[Any, Any], data: Buffer, more: Buffer = b"") -> bytes:
    inner = pads[0]()
    inner.update(data)
    if more:
        inner.update(more)
    outer = pads[1]()
    outer.update(inner.digest())
    return outer.digest()  # type: ignore[no-any-return]


_BLOCK: Final = 64  # SHA-256's block size
_IPAD: Final = bytes(b ^ 0x36 for b in range(256))
_OPAD: Final = bytes(b ^ 0x5C for b in range(256))


def _check_id(number: int, key_id: object) -> str:
    if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
        # Not echoed: it may be a secret written where the id belongs.
        raise ConfigurationError(
            f"the id of signing key number {number} is not 1 to {MAX_KEY_ID} of the "
            "characters A-Z a-z 0-9 . _ : - (an id names a key: write ID=SECRET, id first)"
        )
    return key_id


def _check_secret(key_id: str, secret: object) -> bytes:
    if isinstance(secret, str):
        secret = secret.encode()
    if not isinstance(secret, bytes):
        raise ConfigurationError(f"the secret of signing key {key_id!r} must be str or bytes")
    if len(secret) < MIN_KEY_BYTES:
        raise ConfigurationError(
            f"the secret of signing key {key_id!r} is {len(secret)} bytes; use at least "
            f"{MIN_KEY_BYTES} random bytes (make one with: {_GENERATE})"
        )
    return secret

"""The worked example of a signed frame in docs/protocol.md is what aq writes,
so another implementation can check its HMAC against the page."""

from __future__ import annotations

import hmac
import re
from pathlib import Path

import orjson

from aq.envelope import Codec
from aq.serializer import JSONSerializer
from aq.signing import Keyring

PAGE = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"
SECRET = "an-example-key-never-to-be-used-0123456789"
PAYLOAD = (
    b'{"v":1,"id":"0123456789abcdef0123456789abcdef","task":"add","queue":"default","args":[2,3]}'
)


def _example() -> str:
    text = PAGE.read_text()
    start = text.index("### Worked example")
    return text[start : text.index("\n## ", start)]


def test_the_documented_frame_is_what_a_codec_with_the_documented_key_writes() -> None:
    codec = Codec(JSONSerializer(), keyring=Keyring({"2026-12": SECRET}))
    frame = codec.dumps(orjson.loads(PAYLOAD))
    example = _example()
    hex_lines = re.findall(r"^([0-9a-f]{2,})\s", example, flags=re.MULTILINE)
    assert "".join(hex_lines) == frame.hex()
    assert f"the secret `{SECRET}`" in example
    assert f"{len(frame)} bytes" in example


def test_the_documented_mac_is_the_hmac_sha256_of_every_byte_before_it() -> None:
    codec = Codec(JSONSerializer(), keyring=Keyring({"2026-12": SECRET}))
    frame = codec.dumps(orjson.loads(PAYLOAD))
    mac = hmac.digest(SECRET.encode(), frame[:-32], "sha256").hex()
    assert frame[-32:].hex() == mac
    assert f"SHA2-256(stdin)= {mac}" in _example()

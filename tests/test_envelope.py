"""Specification of aq.envelope: the wire frame, and the Codec that writes and opens it.

A frame, byte by byte (aq.envelope's docstring and docs/protocol.md)::

  "AQ" 0x01 | flags | ct length, content type | [u32 size] | [kid length, key id] | payload | [MAC]

Flags bit 0: signed; bits 1-3: compression (0 none, 1 zlib, 2 zstd). The MAC is the
HMAC-SHA256 of every byte before it. JSON that is neither signed nor compressed
travels bare, as the JSON text alone.
"""

from __future__ import annotations

import hmac
import random
import tracemalloc
import zlib
from collections.abc import Callable
from typing import Any

import msgpack
import orjson
import pytest
import zstandard

import aq
from aq.compression import compressor
from aq.envelope import Codec, Opened
from aq.message import (
    Reply,
    TaskMessage,
    decode_reply,
    decode_task,
    encode_reply,
    encode_task,
)
from aq.serializer import JSON, MSGPACK, JSONSerializer, MsgpackSerializer, serializer_for
from aq.signing import Keyring

KEY = b"envelope-spec-key-0123456789abcdef"
OLD_KEY = b"envelope-spec-old-key-0123456789abcdef"
NEW_KEY = b"envelope-spec-new-key-0123456789abcdef"
#: A value big and repetitive enough that every scheme shrinks it.
VALUE = {"task": "reports.build", "args": ["spam " * 60], "kwargs": {"n": [1, 2, 3]}}
COMPRESSION_CODES = {"zlib": 1, "zstd": 2}


def signed_codec(serializer: str = "json", key_id: str = "k1", **options: Any) -> Codec:
    return Codec(serializer_for(serializer), keyring=Keyring({key_id: KEY}), **options)


def plain_codec(serializer: str = "json", **options: Any) -> Codec:
    return Codec(serializer_for(serializer), **options)


def make_frame(
    payload: bytes,
    *,
    content_type: str = JSON,
    code: int = 0,
    size: int = 0,
    key_id: str | None = None,
    key: bytes = KEY,
    flags: int | None = None,
) -> bytes:
    """A frame assembled by hand from the layout above, independently of aq's writer."""
    ct = content_type.encode("utf-8")
    if flags is None:
        flags = (code << 1) | (1 if key_id is not None else 0)
    frame = b"AQ\x01" + bytes((flags, len(ct))) + ct
    if code:
        frame += size.to_bytes(4, "big")
    if key_id is not None:
        frame += bytes((len(key_id),)) + key_id.encode("ascii")
    frame += payload
    if key_id is not None:
        frame += hmac.digest(key, frame, "sha256")
    return frame


def decompressed(scheme: str, data: bytes) -> bytes:
    if scheme == "zlib":
        return zlib.decompress(data)
    return zstandard.ZstdDecompressor().decompress(data)


def zlib_bomb(total: int) -> bytes:
    """A valid zlib stream of ``total`` zero bytes (a multiple of 1 MiB), built
    without compressing them all: after a sync flush every further MiB of zeros
    compresses to the same bytes, so they are repeated."""
    chunk = bytes(1 << 20)
    deflater = zlib.compressobj(9)
    first = deflater.compress(chunk) + deflater.flush(zlib.Z_SYNC_FLUSH)
    again = deflater.compress(chunk) + deflater.flush(zlib.Z_SYNC_FLUSH)
    checksum = zlib.adler32(b"")
    for _ in range(total >> 20):
        checksum = zlib.adler32(chunk, checksum)
    final_empty_block = b"\x03\x00"
    return first + again * ((total >> 20) - 1) + final_empty_block + checksum.to_bytes(4, "big")


def zstd_bomb(total: int, window_log: int | None = None) -> bytes:
    """A zstd frame of ``total`` zero bytes that does not state its size."""
    params = zstandard.ZstdCompressionParameters.from_level(
        3, **({} if window_log is None else {"window_log": window_log})
    )
    packer = zstandard.ZstdCompressor(compression_params=params).compressobj()
    chunk = bytes(1 << 20)
    return b"".join(packer.compress(chunk) for _ in range(total >> 20)) + packer.flush()


class RecordingJSON:
    """A JSON serializer that records what it is asked to decode."""

    content_type = JSON

    def __init__(self) -> None:
        self.decoded: list[bytes] = []

    def dumps(self, value: Any) -> bytes:
        return orjson.dumps(value)

    def loads(self, data: bytes) -> Any:
        self.decoded.append(data)
        return orjson.loads(data)


# --- the bare payload and the frame -----------------------------------------------------------


def test_unsigned_uncompressed_json_travels_as_the_bare_orjson_bytes() -> None:
    assert plain_codec().dumps(VALUE) == orjson.dumps(VALUE)


def test_a_bare_json_payload_is_read_as_json() -> None:
    assert plain_codec().open(orjson.dumps(VALUE)) == Opened(VALUE, JSON, None, None)


@pytest.mark.parametrize(
    "codec",
    [
        signed_codec(),
        plain_codec("msgpack"),
        plain_codec(compression="zlib", compress_above=0),
    ],
    ids=["signed", "msgpack", "compressed"],
)
def test_every_other_message_is_a_frame_starting_with_aq_1(codec: Codec) -> None:
    assert codec.dumps(VALUE).startswith(b"AQ\x01")


def test_a_signed_uncompressed_json_frame_is_laid_out_byte_by_byte() -> None:
    frame = signed_codec().dumps({"a": 1})

    assert frame[:-32] == (
        b"AQ\x01"  # magic and frame format 1
        b"\x01"  # flags: signed, not compressed
        b"\x10"  # content type: 16 bytes
        b"application/json"
        b"\x02"  # key id: 2 bytes
        b"k1"
        b'{"a":1}'  # the payload
    )
    assert frame[-32:] == hmac.digest(KEY, frame[:-32], "sha256")


@pytest.mark.parametrize("scheme", ["zlib", "zstd"])
def test_a_compressed_unsigned_msgpack_frame_is_laid_out_byte_by_byte(scheme: str) -> None:
    value = {"text": "x" * 300}
    payload = msgpack.packb(value)
    frame = plain_codec("msgpack", compression=scheme, compress_above=0).dumps(value)
    head = (
        b"AQ\x01"
        + bytes((COMPRESSION_CODES[scheme] << 1,))  # flags: compression code, not signed
        + b"\x13"  # content type: 19 bytes
        + b"application/msgpack"
        + len(payload).to_bytes(4, "big")  # the payload's size once decompressed
    )

    assert frame[: len(head)] == head
    assert decompressed(scheme, frame[len(head) :]) == payload


@pytest.mark.parametrize("scheme", ["zlib", "zstd"])
def test_a_compressed_signed_frame_states_the_size_before_the_key_id(scheme: str) -> None:
    value = {"text": "x" * 300}
    payload = orjson.dumps(value)
    frame = signed_codec(compression=scheme, compress_above=0).dumps(value)
    head = (
        b"AQ\x01"
        + bytes((COMPRESSION_CODES[scheme] << 1 | 1,))
        + b"\x10application/json"
        + len(payload).to_bytes(4, "big")
        + b"\x02k1"
    )

    assert frame[: len(head)] == head
    assert decompressed(scheme, frame[len(head) : -32]) == payload
    assert frame[-32:] == hmac.digest(KEY, frame[:-32], "sha256")


def test_a_hand_made_frame_is_read_like_one_aq_wrote() -> None:
    frame = make_frame(orjson.dumps(VALUE), key_id="k1")

    assert signed_codec().open(frame) == Opened(VALUE, JSON, None, "k1")


# --- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
@pytest.mark.parametrize("compression", ["none", "zlib", "zstd"])
@pytest.mark.parametrize("serializer", ["json", "msgpack"])
def test_every_serializer_compression_and_signing_round_trips(
    serializer: str, compression: str, signed: bool
) -> None:
    keyring = Keyring({"k1": KEY}) if signed else None
    codec = Codec(
        serializer_for(serializer), keyring=keyring, compression=compression, compress_above=0
    )

    assert codec.open(codec.dumps(VALUE)) == Opened(
        VALUE,
        serializer_for(serializer).content_type,
        None if compression == "none" else compression,
        "k1" if signed else None,
    )


def test_encode_reports_the_payload_size_before_compression() -> None:
    frame, size = plain_codec(compression="zlib", compress_above=0).encode(VALUE)

    assert size == len(orjson.dumps(VALUE))
    assert len(frame) < size


def test_a_codec_reads_every_content_type_whatever_its_own() -> None:
    msgpack_frame = plain_codec("msgpack").dumps(VALUE)

    assert plain_codec("json").open(msgpack_frame) == Opened(VALUE, MSGPACK, None, None)


# --- when payloads are compressed -------------------------------------------------------------


def test_a_payload_below_compress_above_travels_uncompressed() -> None:
    codec = plain_codec(compression="zlib", compress_above=100)
    value = "x" * 97  # 99 bytes of JSON

    assert codec.dumps(value) == orjson.dumps(value)


def test_a_payload_of_exactly_compress_above_bytes_is_compressed() -> None:
    codec = plain_codec(compression="zlib", compress_above=100)
    value = "x" * 98  # 100 bytes of JSON

    assert codec.open(codec.dumps(value)) == Opened(value, JSON, "zlib", None)


def test_a_payload_that_compression_would_not_shrink_travels_uncompressed() -> None:
    codec = plain_codec("msgpack", compression="zstd", compress_above=0)
    noise = random.Random(0).randbytes(2000)  # msgpack keeps bytes as they are

    frame = codec.dumps(noise)

    assert frame[3] == 0  # flags: neither compressed nor signed
    assert codec.open(frame) == Opened(noise, MSGPACK, None, None)


def test_compression_none_for_one_call_turns_the_codecs_default_off() -> None:
    codec = plain_codec(compression="zstd", compress_above=0)

    assert codec.dumps(VALUE, compression="none") == orjson.dumps(VALUE)


def test_compression_for_one_call_applies_where_the_codec_has_none() -> None:
    codec = plain_codec(compress_above=0)

    assert codec.open(codec.dumps(VALUE, compression="zlib")).compression == "zlib"


def test_content_type_writes_a_message_in_another_serializers_format() -> None:
    codec = plain_codec("json")

    frame = codec.dumps(VALUE, content_type=MSGPACK)

    assert frame[5 : 5 + frame[4]] == b"application/msgpack"
    assert codec.open(frame) == Opened(VALUE, MSGPACK, None, None)


def test_a_msgpack_codec_writes_bare_json_when_asked_for_json_unsigned() -> None:
    assert plain_codec("msgpack").dumps(VALUE, content_type=JSON) == orjson.dumps(VALUE)


def test_a_signed_message_in_another_content_type_is_signed_too() -> None:
    codec = signed_codec("json")

    assert codec.open(codec.dumps(VALUE, content_type=MSGPACK)) == Opened(
        VALUE, MSGPACK, None, "k1"
    )


@pytest.mark.parametrize("compress_above", [-1, 1.5, "1024"])
def test_a_bad_compress_above_is_a_configuration_error(compress_above: Any) -> None:
    with pytest.raises(aq.ConfigurationError, match="compress_above must be a whole number"):
        Codec(JSONSerializer(), compress_above=compress_above)


def test_an_unknown_compression_is_a_configuration_error() -> None:
    with pytest.raises(aq.ConfigurationError, match="'zstd', 'zlib' or 'none', not 'lz4'"):
        Codec(JSONSerializer(), compression="lz4")


# --- signatures -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        signed_codec().dumps({"a": 1}),
        signed_codec("msgpack", compression="zstd", compress_above=0).dumps({"a": "b" * 40}),
    ],
    ids=["json-uncompressed", "msgpack-zstd"],
)
def test_no_single_altered_byte_of_a_signed_frame_decodes(frame: bytes) -> None:
    codec = Codec(JSONSerializer(), keyring=Keyring({"k1": KEY}))
    decoded = []
    for position in range(len(frame)):
        for mask in (0x01, 0x80, 0xFF):
            altered = bytearray(frame)
            altered[position] ^= mask
            try:
                value = codec.open(bytes(altered))
            except aq.MessageDecodeError:  # UntrustedMessage is one
                continue
            decoded.append((position, mask, value))

    assert decoded == []


def test_an_altered_payload_is_refused_as_untrusted() -> None:
    frame = signed_codec().dumps({"amount": 1})

    with pytest.raises(aq.UntrustedMessage, match="bad signature \\(key id 'k1'\\)"):
        signed_codec().open(frame.replace(b'"amount":1', b'"amount":9'))


def test_a_frame_naming_an_unknown_key_id_is_refused_naming_it() -> None:
    frame = signed_codec().dumps(VALUE).replace(b"\x02k1", b"\x02k9", 1)

    with pytest.raises(aq.UntrustedMessage, match="key id 'k9'"):
        signed_codec().open(frame)


@pytest.mark.parametrize(
    "message",
    [orjson.dumps(VALUE), plain_codec("msgpack").dumps(VALUE)],
    ids=["bare", "framed"],
)
def test_an_unsigned_message_is_refused_when_signatures_are_required(message: bytes) -> None:
    with pytest.raises(aq.UntrustedMessage, match="unsigned"):
        signed_codec().open(message)


@pytest.mark.parametrize(
    "message",
    [orjson.dumps(VALUE), plain_codec("msgpack").dumps(VALUE)],
    ids=["bare", "framed"],
)
def test_an_unsigned_message_is_accepted_when_signatures_are_not_required(
    message: bytes,
) -> None:
    codec = Codec(JSONSerializer(), keyring=Keyring({"k1": KEY}, required=False))

    opened = codec.open(message)

    assert (opened.value, opened.key_id) == (VALUE, None)


def test_a_bad_signature_is_refused_even_when_signatures_are_not_required() -> None:
    codec = Codec(JSONSerializer(), keyring=Keyring({"k1": KEY}, required=False))
    frame = codec.dumps(VALUE)

    with pytest.raises(aq.UntrustedMessage):
        codec.open(frame[:-1] + bytes((frame[-1] ^ 1,)))


def test_a_codec_without_a_keyring_reads_a_signed_frame_without_verifying() -> None:
    frame = make_frame(orjson.dumps(VALUE), key_id="somebody-else", key=b"?" * 32)

    assert plain_codec().open(frame) == Opened(VALUE, JSON, None, "somebody-else")


def test_open_without_verify_reads_a_tampered_frame() -> None:
    frame = signed_codec().dumps({"amount": 1}).replace(b'"amount":1', b'"amount":9')

    assert signed_codec().open(frame, verify=False) == Opened({"amount": 9}, JSON, None, "k1")


def test_open_without_verify_reads_a_tampered_compressed_frame() -> None:
    codec = signed_codec("msgpack", compression="zlib", compress_above=0)
    frame = codec.dumps(VALUE)
    tampered = frame[:-32] + bytes(32)

    assert codec.open(tampered, verify=False).value == VALUE


# --- key rotation -----------------------------------------------------------------------------


def test_a_codec_holding_old_and_new_keys_reads_messages_signed_with_the_old() -> None:
    old = Codec(JSONSerializer(), keyring=Keyring({"old": OLD_KEY}))
    both = Codec(JSONSerializer(), keyring=Keyring({"old": OLD_KEY, "new": NEW_KEY}, "new"))

    assert both.open(old.dumps(VALUE)) == Opened(VALUE, JSON, None, "old")


def test_a_codec_holding_old_and_new_keys_signs_with_the_new() -> None:
    both = Codec(JSONSerializer(), keyring=Keyring({"old": OLD_KEY, "new": NEW_KEY}, "new"))
    new = Codec(JSONSerializer(), keyring=Keyring({"new": NEW_KEY}))

    assert new.open(both.dumps(VALUE)).key_id == "new"


def test_a_codec_that_retired_the_old_key_refuses_messages_signed_with_it() -> None:
    old = Codec(JSONSerializer(), keyring=Keyring({"old": OLD_KEY}))
    new = Codec(JSONSerializer(), keyring=Keyring({"new": NEW_KEY}))

    with pytest.raises(aq.UntrustedMessage, match="key id 'old'"):
        new.open(old.dumps(VALUE))


# --- bounds -----------------------------------------------------------------------------------


def test_a_message_over_max_size_is_refused_before_decoding() -> None:
    serializer = RecordingJSON()
    codec = Codec(serializer, max_size=100)

    with pytest.raises(aq.MessageDecodeError, match="over max_message_size \\(100\\)"):
        codec.open(orjson.dumps("x" * 200))
    assert serializer.decoded == []


def test_a_message_of_exactly_max_size_is_read() -> None:
    message = orjson.dumps("x" * 98)

    assert Codec(JSONSerializer(), max_size=100).open(message).value == "x" * 98


@pytest.mark.parametrize("scheme", ["zlib", "zstd"])
def test_a_frame_stating_a_size_over_max_size_is_refused_without_decompressing(
    scheme: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = plain_codec(compression=scheme, compress_above=0).dumps("x" * 5000)

    def never(data: bytes, size: int) -> bytes:
        raise AssertionError("decompressed a frame stating a size over max_size")

    monkeypatch.setattr(compressor(scheme), "decompress", never)
    codec = Codec(JSONSerializer(), max_size=1000)

    with pytest.raises(aq.MessageDecodeError, match="over max_message_size \\(1000\\)"):
        codec.open(frame)


BOMB_BYTES = 200 << 20


@pytest.mark.parametrize(
    ("code", "bomb"),
    [
        (1, lambda: zlib_bomb(BOMB_BYTES)),
        (2, lambda: zstd_bomb(BOMB_BYTES)),
        (2, lambda: zstd_bomb(BOMB_BYTES, window_log=10)),
    ],
    ids=["zlib", "zstd", "zstd-small-window"],
)
def test_a_decompression_bomb_is_refused_without_inflating_it(
    code: int, bomb: Callable[[], bytes]
) -> None:
    frame = make_frame(bomb(), code=code, size=1000)
    codec = plain_codec()
    assert len(frame) < codec.max_size

    tracemalloc.start()
    try:
        with pytest.raises(aq.MessageDecodeError):
            codec.open(frame)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < 8 << 20, f"{peak} bytes allocated to refuse a {BOMB_BYTES}-byte bomb"


@pytest.mark.parametrize(
    ("code", "compress"),
    [
        (1, zlib.compress),
        (2, zstandard.ZstdCompressor().compress),
        (2, zstandard.ZstdCompressor(write_content_size=False).compress),
    ],
    ids=["zlib", "zstd", "zstd-unsized"],
)
@pytest.mark.parametrize("lie", [+1, -1], ids=["more", "fewer"])
def test_a_frame_whose_stated_size_is_not_the_real_one_is_refused(
    code: int, compress: Callable[[bytes], bytes], lie: int
) -> None:
    payload = orjson.dumps(VALUE)
    frame = make_frame(compress(payload), code=code, size=len(payload) + lie)

    with pytest.raises(aq.MessageDecodeError, match="bytes"):
        plain_codec().open(frame)


@pytest.mark.parametrize("code", [1, 2], ids=["zlib", "zstd"])
def test_a_frame_whose_payload_is_not_of_its_compression_is_refused(code: int) -> None:
    frame = make_frame(b"this is not compressed", code=code, size=100)

    with pytest.raises(aq.MessageDecodeError, match="not valid z"):
        plain_codec().open(frame)


TRUNCATABLE = {
    "signed-json": (signed_codec().dumps({"a": [1, 2]}), signed_codec()),
    "signed-json-unverified": (signed_codec().dumps({"a": [1, 2]}), plain_codec()),
    "signed-zstd-msgpack": (
        signed_codec("msgpack", compression="zstd", compress_above=0).dumps(VALUE),
        signed_codec(),
    ),
    "zlib-json": (plain_codec(compression="zlib", compress_above=0).dumps(VALUE), plain_codec()),
    "zstd-msgpack": (
        plain_codec("msgpack", compression="zstd", compress_above=0).dumps(VALUE),
        plain_codec(),
    ),
    "msgpack": (plain_codec("msgpack").dumps({"a": [1, 2]}), plain_codec()),
    "bare-json": (orjson.dumps({"a": [1, 2]}), plain_codec()),
}


@pytest.mark.parametrize(("frame", "codec"), TRUNCATABLE.values(), ids=TRUNCATABLE.keys())
def test_a_message_cut_short_anywhere_is_a_decode_error(frame: bytes, codec: Codec) -> None:
    for cut in range(len(frame)):
        with pytest.raises(aq.MessageDecodeError):
            codec.open(frame[:cut])


@pytest.mark.parametrize("flags", [0x10, 0x20, 0x80, 0xF1])
def test_a_frame_with_unknown_flag_bits_is_refused(flags: int) -> None:
    frame = make_frame(orjson.dumps(VALUE), flags=flags)

    with pytest.raises(aq.MessageDecodeError, match=f"frame flags {flags:#04x} are unknown"):
        plain_codec().open(frame)


def test_a_frame_of_an_unknown_content_type_is_refused_naming_it() -> None:
    frame = make_frame(b"a,b,c", content_type="text/csv")

    with pytest.raises(aq.MessageDecodeError, match="unknown content type 'text/csv'"):
        plain_codec().open(frame)


def test_a_frame_with_a_non_ascii_content_type_is_refused() -> None:
    frame = make_frame(b"{}", content_type="application/jsón")

    with pytest.raises(aq.MessageDecodeError, match="content type is not ASCII"):
        plain_codec().open(frame)


def test_a_frame_with_an_empty_content_type_is_refused() -> None:
    with pytest.raises(aq.MessageDecodeError, match="truncated frame"):
        plain_codec().open(make_frame(b"{}", content_type=""))


@pytest.mark.parametrize("code", [3, 4, 7])
def test_a_frame_with_an_unknown_compression_code_is_refused(code: int) -> None:
    frame = make_frame(orjson.dumps(VALUE), code=code, size=100)

    with pytest.raises(aq.MessageDecodeError, match=f"unknown compression code {code}"):
        plain_codec().open(frame)


def test_json_nested_ten_thousand_deep_is_a_decode_error() -> None:
    with pytest.raises(aq.MessageDecodeError):
        plain_codec().open(b"[" * 10_000 + b"]" * 10_000)


def test_msgpack_nested_ten_thousand_deep_is_a_decode_error() -> None:
    frame = make_frame(b"\x91" * 10_000 + b"\xc0", content_type=MSGPACK)

    with pytest.raises(aq.MessageDecodeError, match="nested too deep"):
        plain_codec().open(frame)


# --- the protocol through a codec -------------------------------------------------------------


def test_encode_reply_refuses_a_reply_over_max_size() -> None:
    codec = Codec(JSONSerializer(), max_size=1000)
    reply = Reply(correlation_id="c", task_id="t", kind="result", payload="x" * 2000)

    with pytest.raises(aq.SerializationError, match="over max_message_size \\(1000\\)"):
        encode_reply(reply, codec)


def test_encode_reply_refuses_a_reply_that_compresses_under_max_size_but_inflates_over() -> None:
    codec = Codec(JSONSerializer(), compression="zlib", compress_above=0, max_size=1000)
    reply = Reply(correlation_id="c", task_id="t", kind="result", payload="x" * 5000)
    assert len(codec.dumps(reply.to_dict())) < 1000

    with pytest.raises(aq.SerializationError, match="over max_message_size \\(1000\\)"):
        encode_reply(reply, codec)


def test_encode_reply_writes_in_the_content_type_it_is_given() -> None:
    codec = signed_codec("json")
    reply = Reply(correlation_id="c", task_id="t", kind="result", payload=[1, 2])

    data = encode_reply(reply, codec, content_type=MSGPACK)

    assert codec.open(data).content_type == MSGPACK
    assert decode_reply(data, codec) == reply


def test_decode_task_through_a_codec_records_how_the_message_came() -> None:
    sender = plain_codec("msgpack", compression="zstd", compress_above=0)
    message = TaskMessage(id="t1", task="reports.build", queue="default", args=["x" * 500])

    received = decode_task(encode_task(message, sender), plain_codec())

    assert (received.content_type, received.compression) == (MSGPACK, "zstd")
    assert received == message


def test_decode_task_of_bare_json_records_json_uncompressed() -> None:
    message = TaskMessage(id="t1", task="reports.build", queue="default")

    received = decode_task(orjson.dumps(message.to_dict()), plain_codec("msgpack"))

    assert (received.content_type, received.compression) == (JSON, "none")


def test_encode_task_through_a_codec_goes_as_the_message_asks() -> None:
    message = TaskMessage(id="t1", task="reports.build", queue="default", args=["x" * 2000])
    message.content_type, message.compression = MSGPACK, "zlib"

    opened = plain_codec("json").open(encode_task(message, plain_codec("json")))

    assert (opened.content_type, opened.compression) == (MSGPACK, "zlib")


def test_decode_task_through_a_signed_codec_refuses_an_unsigned_message() -> None:
    message = TaskMessage(id="t1", task="reports.build", queue="default")

    with pytest.raises(aq.UntrustedMessage):
        decode_task(encode_task(message, plain_codec()), signed_codec())


def test_a_json_codec_reads_bytes_from_a_msgpack_frame() -> None:
    frame = MsgpackSerializer().dumps(b"\x00\xff")

    assert plain_codec().open(make_frame(frame, content_type=MSGPACK)).value == b"\x00\xff"

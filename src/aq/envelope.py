"""The envelope: how a payload is framed, signed and compressed on the wire.

Every message aq sends (task, reply, control, event batch, and the results and
workflow state it keeps in the store) passes through a :class:`Codec`. A
payload that is JSON, uncompressed and unsigned travels bare: the JSON object
alone, as aq has always sent it. Anything else travels in a *frame*, whose
layout docs/protocol.md gives byte by byte::

    "AQ" 0x01 | flags | ct length, ct | [u32 size] | [kid length, kid] | payload | [MAC]

``flags`` says whether the frame is signed (bit 0) and how the payload is
compressed (bits 1-3: 0 none, 1 zlib, 2 zstd). A signed frame ends with the
HMAC-SHA256, under the key named by the key id, of every byte before it, so
the content type, compression and key id are covered along with the payload
(and, inside the payload, the task name, queue and reply address).

Opening a message is bounded before anything is parsed: its size against
``max_size``, the frame's fields against the bytes there are, the signature
before the payload is decompressed or decoded, the stated decompressed size
against ``max_size`` before a byte is inflated. Whatever fails raises
:class:`aq.MessageDecodeError` (:class:`aq.UntrustedMessage` for signatures)
with the reason, which the worker puts on the dead letter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from aq.compression import check_compression, compressor, compressor_by_code
from aq.errors import ConfigurationError, MessageDecodeError, UntrustedMessage
from aq.serializer import JSON, MSGPACK, Serializer, serializer_for
from aq.signing import MAC_SIZE, Keyring

__all__ = ["COMPRESS_ABOVE", "MAGIC", "Codec", "FrameInfo", "Opened", "frame_info"]

#: The first bytes of a frame: "AQ" and the frame format, 1. No JSON text
#: starts so, which is how a bare payload is told from a frame.
MAGIC: Final = b"AQ\x01"
#: Payloads smaller than this many bytes are not compressed by default.
COMPRESS_ABOVE: Final = 1024
_SIGNED: Final = 0x01
_KEY_ID: Final = re.compile(r"[A-Za-z0-9._:-]{1,255}")
_KNOWN_FLAGS: Final = 0x0F


class Opened(NamedTuple):
    """A message taken out of its envelope: the decoded value and how it came.
    (A named tuple: one is made for every message a worker receives.)"""

    value: Any
    content_type: str
    #: ``"zstd"``, ``"zlib"`` or ``None``.
    compression: str | None
    #: The id of the key that signed it, or ``None`` if it was not signed.
    key_id: str | None


class Codec:
    """Encodes and decodes every message of one broker; see the module docstring.

    It has a serializer's shape (``content_type``, ``dumps``, ``loads``), so
    whatever takes a :class:`~aq.serializer.Serializer` takes it.

    Args:
        serializer: what payloads are written with (JSON by default). Payloads
            are read with whatever serializer their frame names: this one, JSON,
            or msgpack.
        keyring: the signing keys (``None``: nothing is signed, nor checked).
        compression: ``"zstd"`` or ``"zlib"`` for payloads of at least
            ``compress_above`` bytes, unless a call says otherwise.
        max_size: the most bytes a message may have, framed or decompressed.

    Raises:
        aq.ConfigurationError: a bad compression name or threshold, or zstd
            without its package.
    """

    def __init__(
        self,
        serializer: Serializer,
        *,
        keyring: Keyring | None = None,
        compression: str | None = None,
        compress_above: int = COMPRESS_ABOVE,
        max_size: int = 4 * 1024 * 1024,
    ) -> None:
        if not isinstance(compress_above, int) or compress_above < 0:
            raise ConfigurationError(
                f"compress_above must be a whole number of bytes, not {compress_above!r}"
            )
        self.serializer = serializer
        self.keyring = keyring
        self.compression = check_compression(compression)
        self.compress_above = compress_above
        self.max_size = max_size
        self._readers: dict[str, Serializer] = {}
        #: The head of this codec's own commonest frame (its content type,
        #: uncompressed, signed by its key): written and read without parsing.
        self._own_head = b""
        if keyring is not None:
            self._own_head = _head(serializer.content_type, 0, 0, keyring.sign_with)

    @property
    def content_type(self) -> str:
        return self.serializer.content_type

    # -- writing ---------------------------------------------------------------------

    def encode(
        self, value: Any, *, compression: str | None = None, content_type: str | None = None
    ) -> tuple[bytes, int]:
        """The message for ``value``, and the size of its payload before compression.

        Args:
            compression: ``"zstd"``, ``"zlib"``, ``"none"``, or ``None`` for the codec's.
            content_type: write with the serializer of this content type (a reply
                in the producer's own), not the codec's.

        Raises:
            aq.SerializationError: ``value`` cannot be encoded.
        """
        serializer = self.serializer
        own = content_type is None or content_type == serializer.content_type
        if not own:
            serializer = self._reader(content_type)  # type: ignore[arg-type]
        payload = serializer.dumps(value)
        size = len(payload)
        scheme = self.compression if compression is None else compression
        code = 0
        if scheme is not None and scheme != "none" and size >= self.compress_above:
            packer = compressor(scheme)
            packed = packer.compress(payload)
            if len(packed) < size:
                payload, code = packed, packer.code
        keyring = self.keyring
        if keyring is None:
            if code == 0 and serializer.content_type == JSON:
                return payload, size  # bare: what aq has always sent
            return _head(serializer.content_type, code, size, None) + payload, size
        if code == 0 and own:
            head = self._own_head
        else:
            head = _head(serializer.content_type, code, size, keyring.sign_with)
        return b"".join((head, payload, keyring.sign(head, payload))), size

    def dumps(
        self, value: Any, *, compression: str | None = None, content_type: str | None = None
    ) -> bytes:
        """:meth:`encode`, the message alone."""
        return self.encode(value, compression=compression, content_type=content_type)[0]

    # -- reading ---------------------------------------------------------------------

    def open(self, data: bytes, *, verify: bool = True) -> Opened:
        """Check, verify, decompress and decode ``data``, in that order.

        Args:
            verify: check the signature (``False`` only to show a message, as
                ``aq dlq list`` does; never to act on one).

        Raises:
            aq.UntrustedMessage: signatures are required and it has none, or its
                signature is by an unknown key or does not match.
            aq.MessageDecodeError: anything else is wrong with it.
        """
        if len(data) > self.max_size:
            raise MessageDecodeError(
                f"message of {len(data)} bytes is over max_message_size ({self.max_size}); "
                "not decoded"
            )
        keyring = self.keyring
        if keyring is not None and data.startswith(self._own_head):  # the commonest frame
            if verify:
                keyring.verify_signer(data[:-MAC_SIZE], data[-MAC_SIZE:])
            value = self.serializer.loads(data[len(self._own_head) : -MAC_SIZE])
            return Opened(value, self.serializer.content_type, None, keyring.sign_with)
        if data[:3] != MAGIC:
            if verify and keyring is not None and keyring.required:
                raise UntrustedMessage("unsigned, and this process requires signed messages")
            return Opened(self._reader(JSON).loads(data), JSON, None, None)
        return self._open_frame(memoryview(data), verify)

    def loads(self, data: bytes) -> Any:
        """:meth:`open`, the value alone."""
        return self.open(data).value

    def _open_frame(self, frame: memoryview, verify: bool) -> Opened:
        info = frame_info(frame)
        end = len(frame)
        if info.key_id is not None:
            end -= MAC_SIZE
            if verify and self.keyring is not None:
                self.keyring.verify(info.key_id, frame[:end], bytes(frame[end:]))
        elif verify and self.keyring is not None and self.keyring.required:
            raise UntrustedMessage("unsigned, and this process requires signed messages")
        reader = self._reader(info.content_type)
        payload: bytes | memoryview = frame[info.payload_at : end]
        compression = None
        if info.compression_code:
            if info.size > self.max_size:
                raise MessageDecodeError(
                    f"decompresses to {info.size} bytes, over max_message_size "
                    f"({self.max_size}); not decompressed"
                )
            scheme = compressor_by_code(info.compression_code)
            payload = scheme.decompress(payload, info.size)  # type: ignore[arg-type]
            compression = scheme.name
        value = reader.loads(payload if isinstance(payload, bytes) else bytes(payload))
        return Opened(value, info.content_type, compression, info.key_id)

    def _reader(self, content_type: str) -> Serializer:
        reader = self._readers.get(content_type)
        if reader is None:
            if content_type == self.serializer.content_type:
                reader = self.serializer
            elif content_type not in (JSON, MSGPACK):
                raise MessageDecodeError(f"unknown content type {content_type!r}")
            else:
                try:
                    reader = serializer_for(content_type)
                except ConfigurationError as exc:
                    raise MessageDecodeError(
                        f"content type {content_type!r} cannot be read here: {exc}"
                    ) from None
            self._readers[content_type] = reader
        return reader


def _head(content_type: str, code: int, size: int, key_id: str | None) -> bytes:
    """A frame's head, up to its payload."""
    ct = content_type.encode("ascii")
    head = MAGIC + bytes(((code << 1) | (_SIGNED if key_id else 0), len(ct))) + ct
    if code:
        head += size.to_bytes(4, "big")
    if key_id is not None:
        head += bytes((len(key_id),)) + key_id.encode("ascii")
    return head


@dataclass(frozen=True, slots=True)
class FrameInfo:
    """The fields of a frame's head."""

    content_type: str
    compression_code: int
    #: The payload's size once decompressed (when compressed).
    size: int
    key_id: str | None
    #: Where the payload starts.
    payload_at: int


def frame_info(frame: bytes | memoryview) -> FrameInfo:
    """Read a frame's head, checking each field against the bytes there are.

    Raises:
        aq.MessageDecodeError: not a frame, truncated, or with flags this aq
            does not know.
    """
    if bytes(frame[:3]) != MAGIC:
        raise MessageDecodeError("not an aq frame")
    if len(frame) < 5:
        raise MessageDecodeError("truncated frame")
    flags, ct_length = frame[3], frame[4]
    if flags & ~_KNOWN_FLAGS:
        raise MessageDecodeError(f"frame flags {flags:#04x} are unknown to this aq")
    at = 5 + ct_length
    code = flags >> 1
    signed = flags & _SIGNED
    need = at + (4 if code else 0) + (1 if signed else 0)
    if ct_length == 0 or len(frame) < need:
        raise MessageDecodeError("truncated frame")
    try:
        content_type = bytes(frame[5:at]).decode("ascii")
    except UnicodeDecodeError:
        raise MessageDecodeError("the frame's content type is not ASCII") from None
    size = 0
    if code:
        size = int.from_bytes(frame[at : at + 4], "big")
        at += 4
    key_id = None
    if signed:
        id_length = frame[at]
        at += 1 + id_length
        if id_length == 0 or len(frame) < at + MAC_SIZE:
            raise MessageDecodeError("truncated frame")
        key_id = bytes(frame[at - id_length : at]).decode("latin-1")
        if not _KEY_ID.fullmatch(key_id):
            raise MessageDecodeError("the frame's key id is not 1 to 255 of A-Z a-z 0-9 . _ : -")
    return FrameInfo(content_type, code, size, key_id, at)

"""Compressing message payloads, and decompressing them within a bound.

Two schemes: ``zlib`` (the standard library) and ``zstd`` (the ``zstandard``
package, the extra ``aq-tasks[zstd]``). Each has a one-byte code in a framed
message (docs/protocol.md). Decompression is bounded: the frame states the
payload's size once decompressed, that size must be within the caller's limit
before any byte is inflated, and the output is read up to that size and no
further, so a small body that would inflate past ``max_message_size`` (a
decompression bomb) costs no more memory than the limit.
"""

from __future__ import annotations

import threading
import zlib
from typing import Any, Final, Protocol

from aq.errors import ConfigurationError, MessageDecodeError

__all__ = ["COMPRESSIONS", "Compressor", "check_compression", "compressor", "compressor_by_code"]

#: The names ``compression=`` accepts; ``"none"`` turns a broker's default off.
COMPRESSIONS: Final = ("zstd", "zlib", "none")
_ZSTD_LEVEL: Final = 3
_ZLIB_LEVEL: Final = 6
_ZSTD_WINDOW: Final = 8 << 20


class Compressor(Protocol):
    """One compression scheme."""

    name: str
    #: Its code in a framed message's flags (docs/protocol.md).
    code: int

    def compress(self, data: bytes) -> bytes: ...

    def decompress(self, data: bytes, size: int) -> bytes:
        """Exactly ``size`` bytes from ``data``; raise :class:`MessageDecodeError`
        if it holds more, fewer, or is not of this scheme."""
        ...


def check_compression(value: object, option: str = "compression") -> str | None:
    """Validate a ``compression=`` option: a scheme name, ``"none"``, or ``None``
    (the default of the level above). Loads ``zstandard`` now for ``"zstd"``, so
    a missing extra is found at start-up.

    Raises:
        aq.ConfigurationError: not one of those, or zstd without its package.
    """
    if value is None:
        return None
    if value not in COMPRESSIONS:
        raise ConfigurationError(f"{option} must be 'zstd', 'zlib' or 'none', not {value!r}")
    if value == "zstd":
        _zstandard()
    return str(value)


class _Zlib:
    name = "zlib"
    code = 1

    def compress(self, data: bytes) -> bytes:
        return zlib.compress(data, _ZLIB_LEVEL)

    def decompress(self, data: bytes, size: int) -> bytes:
        inflater = zlib.decompressobj()
        try:
            out = inflater.decompress(data, size + 1)  # one byte more shows a lie
        except zlib.error as exc:
            raise MessageDecodeError(f"not valid zlib data: {exc}") from None
        if len(out) != size or not inflater.eof:
            raise MessageDecodeError(_mismatch(size, len(out)))
        if inflater.unused_data:
            raise MessageDecodeError("bytes follow the end of the zlib data")
        return out


class _Zstd:
    name = "zstd"
    code = 2

    def __init__(self) -> None:
        self._module = _zstandard()
        self._local = threading.local()  # zstandard's compressors are not thread-safe

    def compress(self, data: bytes) -> bytes:
        packer = getattr(self._local, "packer", None)
        if packer is None:
            packer = self._local.packer = self._module.ZstdCompressor(level=_ZSTD_LEVEL)
        return packer.compress(data)  # type: ignore[no-any-return]

    def decompress(self, data: bytes, size: int) -> bytes:
        zstd = self._module
        try:
            stated = zstd.frame_content_size(data)
            if stated not in (-1, size):  # -1: the frame does not say
                raise MessageDecodeError(
                    f"zstd frame says {stated} bytes, the message header {size}"
                )
            # The window is what the decompressor allocates: no more than the payload
            # or 8 MiB (what encoders use up to level 19), not zstd's default 128 MiB.
            window = max(_ZSTD_WINDOW, 1 << max(size - 1, 1).bit_length())
            reader = zstd.ZstdDecompressor(max_window_size=window).stream_reader(data)
            chunks, have = [], 0
            while have <= size:  # read one byte past the stated size, never further
                chunk = reader.read(size + 1 - have)
                if not chunk:
                    break
                chunks.append(chunk)
                have += len(chunk)
        except zstd.ZstdError as exc:
            raise MessageDecodeError(f"not valid zstd data: {exc}") from None
        if have != size:
            raise MessageDecodeError(_mismatch(size, have))
        return b"".join(chunks)


def _mismatch(size: int, got: int) -> str:
    if got > size:
        return f"decompresses past the {size} bytes its header states; not inflated further"
    return f"decompresses to {got} bytes, not the {size} its header states"


def _zstandard() -> Any:
    try:
        import zstandard
    except ImportError:
        raise ConfigurationError(
            "compression='zstd' needs the zstandard package: pip install 'aq-tasks[zstd]'"
        ) from None
    return zstandard


_BY_CODE: dict[int, Compressor] = {}


def compressor(name: str) -> Compressor:
    """The scheme called ``name`` (``"zstd"`` or ``"zlib"``), made once per process.

    Raises:
        aq.ConfigurationError: zstd without the zstandard package.
    """
    if name not in ("zstd", "zlib"):
        raise ConfigurationError(f"unknown compression {name!r}: use 'zstd' or 'zlib'")
    code = 2 if name == "zstd" else 1
    found = _BY_CODE.get(code)
    if found is None:
        found = _BY_CODE[code] = _Zstd() if code == 2 else _Zlib()
    return found


def compressor_by_code(code: int) -> Compressor:
    """The scheme whose frame code is ``code``.

    Raises:
        aq.MessageDecodeError: no such scheme, or this process cannot decompress it.
    """
    if code == 1:
        return compressor("zlib")
    if code == 2:
        try:
            return compressor("zstd")
        except ConfigurationError:
            raise MessageDecodeError(
                "compressed with zstd, and this process lacks the zstandard package "
                "(pip install 'aq-tasks[zstd]')"
            ) from None
    raise MessageDecodeError(f"unknown compression code {code}")

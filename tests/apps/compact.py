"""An app whose broker writes msgpack, compresses with zstd and signs every message."""

from __future__ import annotations

import aq

#: A throwaway key for tests: never a real secret.
KEY = "test-key-of-at-least-thirty-two-bytes-0000"


def make_broker(url: str = "memory://") -> aq.Broker:
    """A broker as this app configures it, on ``url``."""
    return aq.Broker(
        url,
        serializer="msgpack",
        compression="zstd",
        signing_keys={"2026-12": KEY},
    )


broker = make_broker()


@broker.task(name="compact.store_blob")
async def store_blob(blob: bytes) -> None:
    """Fail, so that the message is dead-lettered."""
    raise ValueError(f"refused {len(blob)} bytes")

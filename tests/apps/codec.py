"""An app whose broker encodes messages with a codec of its own, not JSON."""

from __future__ import annotations

from typing import Any

import aq
from aq.serializer import JSONSerializer


class BackwardsJSON:
    """JSON written back to front: what no JSON parser reads, and this codec does."""

    content_type = "application/x-backwards-json"

    def __init__(self) -> None:
        self._json = JSONSerializer()

    def dumps(self, value: Any) -> bytes:
        return self._json.dumps(value)[::-1]

    def loads(self, data: bytes) -> Any:
        return self._json.loads(data[::-1])


broker = aq.Broker("memory://", serializer=BackwardsJSON())


@broker.task(name="codec.refuse")
async def refuse() -> None:
    """Fail, so that the message is dead-lettered."""
    raise ValueError("refused")

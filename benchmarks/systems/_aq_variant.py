"""What the drain-only aq variants share: a client that sends ``noop``."""

from __future__ import annotations

from types import TracebackType
from typing import Any

import aq


def noop_client(broker: aq.Broker, noop: Any) -> type:
    """The benchmark client of a variant whose one task is ``noop`` on ``broker``."""

    class Client:
        def __init__(self, url: str) -> None:
            pass

        async def __aenter__(self) -> Client:
            await broker.__aenter__()
            return self

        async def __aexit__(
            self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
        ) -> None:
            await broker.__aexit__(et, e, tb)

        async def send(self, kind: str) -> None:
            await noop.kiq()

        async def call(self) -> None:
            await (await noop.kiq()).result(timeout=30)

    return Client

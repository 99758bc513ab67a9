"""``Connection``: what every broker interface that holds a connection shares.

A :class:`~aq.transport.base.Transport` and a :class:`~aq.transport.store.Store`
are opened with :meth:`Connection.connect` and closed with
:meth:`Connection.close`, or used as async context managers.
"""

from __future__ import annotations

import abc
from types import TracebackType
from typing import Self

__all__ = ["Connection"]


class Connection(abc.ABC):
    """Opened with :meth:`connect`, closed with :meth:`close`; an async context manager."""

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @abc.abstractmethod
    async def connect(self) -> None:
        """Open connections; raises :class:`aq.BrokerUnavailable` if the server is unreachable."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close connections. Safe to call more than once."""

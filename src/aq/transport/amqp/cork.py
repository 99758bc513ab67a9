"""One socket write per event-loop turn for an AMQP connection.

aiormq hands every frame group (a publish, an ack) to the socket as it comes,
and asyncio sends each at once when the socket is idle: one ``send`` system
call per frame group, two per task in a busy worker (its reply and its ack).
That made the socket write the largest single cost in a profile of the worker.

:class:`CorkedTransportFactory` opens aiormq's connection as usual and then
*corks* its stream writer: what is written during one turn of the event loop is
held, and sent as a single write at the start of the next turn. A busy worker
finishing hundreds of tasks in a turn sends their replies and acks together;
an idle one waits one loop iteration, microseconds, before its only frame goes.
Closing flushes first, so no frame (a ``connection.close`` above all) is lost.

aiormq takes a transport factory as a connection option; aq passes it through
aio-pika's connection keyword arguments (see AmqpTransport.connect).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiormq.connection import TCPTransportFactory, TLSTransportFactory, TransportFactory
from yarl import URL

__all__ = ["CorkedTransportFactory", "cork"]


class CorkedTransportFactory(TransportFactory):
    """aiormq's own TCP or TLS connection, corked."""

    async def create(
        self, url: URL, **kwargs: Any
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        factory = TLSTransportFactory() if url.scheme == "amqps" else TCPTransportFactory()
        reader, writer = await factory.create(url, **kwargs)
        cork(writer)
        return reader, writer


def cork(writer: asyncio.StreamWriter) -> None:
    """Hold what ``writer`` is asked to write until the next loop turn.

    The stream writer, not its transport, is wrapped: it is a plain Python
    object under every event loop, where uvloop's transports are not.
    """
    loop = asyncio.get_running_loop()
    write, close = writer.write, writer.close
    held: list[bytes | bytearray | memoryview] = []

    def flush() -> None:
        if not held:
            return
        data = held[0] if len(held) == 1 else b"".join(held)
        held.clear()
        if not writer.transport.is_closing():
            write(data)

    def corked_write(data: bytes | bytearray | memoryview) -> None:
        if not held:
            loop.call_soon(flush)
        held.append(data)

    def corked_close() -> None:
        flush()
        close()

    writer.write = corked_write  # type: ignore[method-assign]
    writer.close = corked_close  # type: ignore[method-assign]

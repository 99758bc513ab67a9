"""The ``memory://`` backend: a broker and a store inside this process, for tests
and quick starts. ``transport`` → ``admin``, ``store`` → ``hub``."""

from aq.transport.memory.store import MemoryStore
from aq.transport.memory.transport import MemoryTransport

__all__ = ["MemoryStore", "MemoryTransport"]

"""The Redis backend (``redis://``, ``rediss://``, ``redis+sentinel://``,
``redis+cluster://``): transport, admin and store on one server; needs
``aq-tasks[redis]``.

Inside the package every module depends on :mod:`.context` (the client, the
settings, the key names), never on the transport: ``transport`` → ``consumer`` →
``delivery``; ``transport`` → ``inbox``, ``admin``, ``store``; all of them →
``context`` → ``batch``, ``connection`` (→ ``tls``), ``keys``, ``scripts``.
"""

from aq.transport.redis.store import RedisStore
from aq.transport.redis.transport import RedisTransport

__all__ = ["RedisStore", "RedisTransport"]

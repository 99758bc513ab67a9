"""The Redis transport (``redis://``, ``rediss://``); needs ``aq-tasks[redis]``."""

from aq.transport.redis.transport import RedisTransport

__all__ = ["RedisTransport"]

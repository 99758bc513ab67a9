"""What every part of the Redis backend shares: the client, settings and key names.

The transport, its consumers, inboxes, admin and store all depend on one
:class:`RedisContext`, and none of them on each other: the context opens and
closes the client, loads the Lua scripts, owns the per-turn
:class:`~aq.transport.redis.batch.Batcher`, and knows each queue's keys.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from aq.errors import BrokerError
from aq.transport.kit import connected
from aq.transport.redis import scripts, tls
from aq.transport.redis.batch import Batcher
from aq.transport.redis.connection import (
    RedisSettings,
    make_client,
    retrying,
    translated,
)
from aq.transport.redis.keys import GROUP, Keys, QueueKeys

__all__ = ["RedisContext"]


class RedisContext:
    """One Redis connection (pool) and what is derived from its URL."""

    def __init__(self, client_url: str, settings: RedisSettings) -> None:
        self.client_url = client_url
        self.settings = settings
        self.keys = Keys(settings.prefix)
        #: Whether the server is a Redis Cluster (no cross-slot scripts, no
        #: scripts in pipelines).
        self.cluster = False
        self._client: Redis | None = None
        self._sentinels: list[Redis] = []
        self._scripts: dict[str, Any] = {}
        self._batcher: Batcher | None = None
        self._queue_keys: dict[str, QueueKeys] = {}

    @property
    def connected(self) -> bool:
        return self._client is not None

    @property
    def client(self) -> Redis:
        return connected(self._client, "Redis transport")

    @property
    def batcher(self) -> Batcher:
        """Sends the commands of one event-loop turn in one pipeline."""
        return connected(self._batcher, "Redis transport")

    def script(self, name: str) -> Any:
        """The registered Lua script ``name`` of :mod:`aq.transport.redis.scripts`."""
        return self._scripts[name]

    async def run_script(self, name: str, keys: list[Any], args: list[Any]) -> Any:
        """Run a script in the next pipeline this event-loop turn sends."""
        script = self._scripts[name]
        if self.cluster:  # cluster pipelines refuse EVALSHA: run it on its own
            return await script(keys=keys, args=args)
        return await self.batcher.run_script(script, keys, args)

    async def connect(self) -> None:
        if self._client is not None:
            return
        client, self._sentinels = make_client(self.client_url, self.settings)

        async def ping() -> Any:
            # A TLS mismatch can look like an outage: ``explained`` tells them apart.
            return await tls.explained(self.client_url, self.settings, client.ping())

        try:
            await retrying("connect", ping, self.settings.publish_timeout)
        except BaseException:
            await self._close_clients(client)
            raise
        for name in scripts.__all__:
            self._scripts[name] = client.register_script(getattr(scripts, name))
        self._client = client
        self._batcher = Batcher(client)
        self.cluster = isinstance(client, RedisCluster)

    async def close(self) -> None:
        client, self._client = self._client, None
        self._batcher = None
        if client is not None:
            await self._close_clients(client)

    async def _close_clients(self, client: Redis) -> None:
        await client.aclose()
        for sentinel in self._sentinels:
            await sentinel.aclose()
        self._sentinels = []

    def queue_keys(self, queue: str) -> QueueKeys:
        keys = self._queue_keys.get(queue)
        if keys is None:  # building the names took a sixth of a producer's time per kiq
            keys = self._queue_keys[queue] = self.keys.queue(queue)
        return keys

    async def ensure_groups(self, keys: QueueKeys) -> None:
        """Create the consumer group on each of the queue's streams if missing."""
        for stream in keys.streams:
            try:
                with translated("create consumer group"):
                    await self.client.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except BrokerError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

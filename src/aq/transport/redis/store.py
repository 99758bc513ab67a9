"""The Redis :class:`~aq.transport.store.Store`: values, sets and leases with TTLs.

A store key ``"kind:name"`` is kept at ``<prefix>:kind:{name}``, so a task's
result is where earlier versions kept it, and what belongs to one name (a
lease and its token counter, a value and its fence) shares a hash slot on a
Redis Cluster. Multi-step operations are the ``STORE_*`` Lua scripts of
:mod:`aq.transport.redis.scripts`. On a cluster, :meth:`RedisStore.set_fenced`
checks the lease and writes in two steps (they lie in different slots); the
fence still refuses any write from a holder whose token is older than one that
wrote the key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aq.transport.redis.connection import parse_url, retrying, translated
from aq.transport.redis.context import RedisContext
from aq.transport.store import JoinState, Lease, RateDecision, SlotTurn, Store

__all__ = ["RedisStore"]

#: How long a lease's token counter outlives its last acquisition.
_COUNTER_TTL_MS = 30 * 24 * 3600 * 1000


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _us(seconds: float) -> int:
    return max(0, round(seconds * 1_000_000))


class RedisStore(Store):
    """A store on Redis. Built from a URL it has its own connection; handed out
    by a Redis transport (``transport.store()``) it shares the transport's."""

    def __init__(self, url: str | RedisContext, options: Mapping[str, Any] | None = None) -> None:
        if isinstance(url, RedisContext):
            self._context, self._owned = url, False
        else:
            self._context, self._owned = RedisContext(*parse_url(url, options)), True

    def _key(self, key: str) -> str:
        kind, _, name = key.partition(":")
        prefix = self._context.keys.prefix
        return f"{prefix}:{kind}:{{{name}}}" if name else f"{prefix}:{{{kind}}}"

    async def connect(self) -> None:
        if self._owned:
            await self._context.connect()

    async def close(self) -> None:
        if self._owned:
            await self._context.close()

    async def _retrying(self, what: str, command: Any) -> Any:
        batcher = self._context.batcher

        async def run() -> Any:
            return await batcher.run(command)

        return await retrying(what, run, self._context.settings.publish_timeout)

    async def get(self, key: str) -> bytes | None:
        with translated("read from the store"):
            value: Any = await self._context.client.get(self._key(key))
        return value if isinstance(value, bytes) else None

    async def set(self, key: str, value: bytes, *, ttl: float) -> None:
        await self._set(self._key(key), value, _ms(ttl), nx=False)

    async def set_if_absent(self, key: str, value: bytes, *, ttl: float) -> bool:
        return await self._set(self._key(key), value, _ms(ttl), nx=True)

    async def _set(self, name: str, value: bytes, ms: int, *, nx: bool) -> bool:
        context = self._context
        if context.cluster:  # cluster pipelines refuse scripts: a plain SET
            written = await self._retrying(
                "write to the store", lambda pipe: pipe.set(name, value, px=ms, nx=nx)
            )
            return bool(written)
        script = context.script("STORE_SET")

        async def run() -> Any:
            # A turn's writes (results, task states) go as one script call.
            return await context.batcher.run_merged(script, [name], [value, ms, int(nx)])

        return bool(await retrying("write to the store", run, context.settings.publish_timeout))

    async def set_many(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        if self._context.cluster:
            await super().set_many(items)
            return
        keys = [self._key(key) for key, _, _ in items]
        args: list[Any] = []
        for _, value, ttl in items:
            args += [value, _ms(ttl), 0]
        await self._script("STORE_SET", keys, args)

    async def delete(self, key: str) -> bool:
        with translated("delete from the store"):
            return bool(await self._context.client.delete(self._key(key)))

    async def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        context = self._context

        async def run() -> Any:
            return await context.run_script(name, keys, args)

        return await retrying(f"{name.lower()}", run, context.settings.publish_timeout)

    async def add_member(self, key: str, member: str, *, ttl: float) -> int:
        return int(await self._script("STORE_ADD_MEMBER", [self._key(key)], [member, _ms(ttl)]))

    async def members(self, key: str) -> frozenset[str]:
        with translated("read from the store"):
            found: Any = await self._context.client.smembers(self._key(key))
        return frozenset(m.decode() if isinstance(m, bytes) else str(m) for m in found)

    async def remove_member(self, key: str, member: str) -> bool:
        name = self._key(key)
        return bool(await self._retrying("write to the store", lambda p: p.srem(name, member)))

    async def delete_if(self, key: str, value: bytes) -> bool:
        return bool(await self._script("STORE_DELETE_IF", [self._key(key)], [value]))

    async def join(
        self, key: str, index: int | None, part: bytes, *, size: int | None, ttl: float
    ) -> JoinState:
        parts_key = self._key(key)
        keys = [parts_key, parts_key + ":state"]
        args = ["" if index is None else index, part, "" if size is None else size, _ms(ttl)]
        context = self._context

        async def run() -> Any:
            if context.cluster:  # one join per call: cluster pipelines refuse scripts
                return (await context.run_script("STORE_JOIN", keys, args))[0]
            # A turn's joins (a worker finishing many chord members) go as one call.
            return await context.batcher.run_merged(context.script("STORE_JOIN"), keys, args)

        count, known, found = await retrying("join", run, context.settings.publish_timeout)
        size = None if known < 0 else int(known)
        if not found:
            return JoinState(int(count), size)
        pairs = sorted(zip(found[::2], found[1::2], strict=True), key=lambda kv: int(kv[0]))
        return JoinState(int(count), size, [bytes(v) for _, v in pairs])

    async def finish_join(self, key: str, *, ttl: float) -> None:
        parts_key = self._key(key)
        await self._script("STORE_FINISH_JOIN", [parts_key, parts_key + ":state"], [_ms(ttl)])

    async def reserve_rate(
        self, key: str, *, interval: float, burst: int, max_wait: float, count: int = 1
    ) -> RateDecision:
        args = [max(1, _us(interval)), burst, _us(max_wait), count]
        granted, wait = await self._script("STORE_RESERVE_RATE", [self._key(key)], args)
        return RateDecision(int(granted), int(wait) / 1e6)

    async def acquire_slot(self, key: str, holder: str, *, limit: int, ttl: float) -> bool:
        args = [holder, limit, _ms(ttl)]
        return bool(await self._script("STORE_ACQUIRE_SLOT", [self._key(key)], args))

    async def queue_for_slot(
        self, key: str, holder: str, waiter: str, *, limit: int, ttl: float, line_ttl: float
    ) -> SlotTurn:
        slots = self._key(key)
        keys = [slots, f"{slots}:line", f"{slots}:seen"]
        args = [holder, limit, _ms(ttl), waiter, _ms(line_ttl)]
        acquired, ahead = await self._script("STORE_QUEUE_FOR_SLOT", keys, args)
        return SlotTurn(bool(acquired), int(ahead))

    async def renew_slot(self, key: str, holder: str, *, ttl: float) -> bool:
        args = [holder, _ms(ttl)]
        return bool(await self._script("STORE_RENEW_SLOT", [self._key(key)], args))

    async def release_slot(self, key: str, holder: str) -> bool:
        name = self._key(key)
        return bool(await self._retrying("write to the store", lambda p: p.zrem(name, holder)))

    def _lease_keys(self, name: str) -> list[str]:
        key = self._key(f"lease:{name}")
        return [key, f"{key}:token"]

    async def acquire_lease(self, name: str, owner: str, *, ttl: float) -> Lease | None:
        if "\t" in owner:
            raise ValueError("a lease owner may not contain a tab")
        token = await self._script(
            "STORE_ACQUIRE_LEASE", self._lease_keys(name), [owner, _ms(ttl), _COUNTER_TTL_MS]
        )
        return None if token is None else Lease(name, owner, int(token))

    async def renew_lease(self, lease: Lease, *, ttl: float) -> bool:
        return await self._end_lease(lease, str(_ms(ttl)))

    async def release_lease(self, lease: Lease) -> bool:
        return await self._end_lease(lease, "")

    async def _end_lease(self, lease: Lease, ttl_ms: str) -> bool:
        held = f"{lease.owner}\t{lease.token}"
        key = self._lease_keys(lease.name)[0]
        return bool(await self._script("STORE_END_LEASE", [key], [held, ttl_ms]))

    async def set_fenced(self, key: str, value: bytes, *, ttl: float, lease: Lease) -> bool:
        target = self._key(key)
        lease_key = self._lease_keys(lease.name)[0]
        held = f"{lease.owner}\t{lease.token}"
        keys = [target, f"{target}:fence"]
        if self._context.cluster:
            with translated("check a lease"):
                if await self._context.client.get(lease_key) != held.encode():
                    return False
        else:
            keys.append(lease_key)
        args = [value, _ms(ttl), lease.token, held]
        return bool(await self._script("STORE_SET_FENCED", keys, args))

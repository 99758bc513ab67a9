"""The in-process :class:`~aq.transport.store.Store` of a ``memory://`` broker.

Values live in the hub (:mod:`aq.transport.memory.hub`) with their expiry;
expiries also sit in a heap, so each write drops what has expired in time
proportional to what expired, never by scanning everything kept. Every
operation runs within one step of the event loop, so it is atomic.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aq.errors import ConfigurationError
from aq.transport.kit import connected
from aq.transport.memory.hub import Hub, attach, detach, hub_name
from aq.transport.store import JoinState, Lease, RateDecision, SlotTurn, Store

__all__ = ["MemoryStore"]

_FENCE = "\0fence"
_TOKEN = "\0token"
_LINE = "\0line"


class _Join:
    """The state of one join: its parts by index, its size, its completer."""

    __slots__ = ("done", "owner", "parts", "size")

    def __init__(self) -> None:
        self.parts: dict[int, bytes] = {}
        self.size: int | None = None
        self.owner: int | None = None
        self.done = False


class MemoryStore(Store):
    """A store inside this process; see the module docstring."""

    def __init__(
        self, url: str | Callable[[], Hub], options: Mapping[str, Any] | None = None
    ) -> None:
        if options:
            raise ConfigurationError(
                f"the {', '.join(sorted(options))} option(s) do not apply to memory:// stores"
            )
        self._hub: Hub | None = None
        if isinstance(url, str):
            self._name, self._shared = hub_name(url), None
        else:  # a memory transport's own store: its hub, once it is connected
            self._name, self._shared = "", url

    @property
    def hub(self) -> Hub:
        if self._shared is not None:
            return self._shared()
        return connected(self._hub, "memory store")

    async def connect(self) -> None:
        if self._shared is None and self._hub is None:
            self._hub = attach(self._name)

    async def close(self) -> None:
        if self._hub is not None:
            hub, self._hub = self._hub, None
            detach(self._name, hub)

    def _read(self, key: str) -> object | None:
        found = self.hub.values.get(key)
        if found is None or found[0] <= time.time():
            return None
        return found[1]

    def _write(self, key: str, value: object, ttl: float) -> None:
        hub, now = self.hub, time.time()
        while hub.expiries and hub.expiries[0][0] <= now:
            expiry, old = heapq.heappop(hub.expiries)
            kept = hub.values.get(old)
            if kept is not None and kept[0] <= now:
                del hub.values[old]
        expiry = now + ttl
        hub.values[key] = (expiry, value)
        heapq.heappush(hub.expiries, (expiry, key))

    async def get(self, key: str) -> bytes | None:
        value = self._read(key)
        return value if isinstance(value, bytes) else None

    async def set(self, key: str, value: bytes, *, ttl: float) -> None:
        self._write(key, value, ttl)

    async def set_many(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        for key, value, ttl in items:
            self._write(key, value, ttl)

    async def set_if_absent(self, key: str, value: bytes, *, ttl: float) -> bool:
        if self._read(key) is not None:
            return False
        self._write(key, value, ttl)
        return True

    async def delete(self, key: str) -> bool:
        present = self._read(key) is not None
        self.hub.values.pop(key, None)
        return present

    async def add_member(self, key: str, member: str, *, ttl: float) -> int:
        found = self._read(key)
        members = found if isinstance(found, frozenset) else frozenset()
        members = members | {member}
        self._write(key, members, ttl)
        return len(members)

    async def members(self, key: str) -> frozenset[str]:
        found = self._read(key)
        return found if isinstance(found, frozenset) else frozenset()

    async def remove_member(self, key: str, member: str) -> bool:
        found = self.hub.values.get(key)
        if found is None or not isinstance(found[1], frozenset) or member not in found[1]:
            return False
        self.hub.values[key] = (found[0], found[1] - {member})
        return True

    async def delete_if(self, key: str, value: bytes) -> bool:
        if self._read(key) != value:
            return False
        del self.hub.values[key]
        return True

    async def join(
        self, key: str, index: int | None, part: bytes, *, size: int | None, ttl: float
    ) -> JoinState:
        found = self._read(key)
        state = found if isinstance(found, _Join) else _Join()
        if index is not None and index not in state.parts and not state.done:
            state.parts[index] = part
        if size is not None and state.size is None:
            state.size = size
        self._write(key, state, ttl)
        count = len(state.parts)
        if state.done or state.size is None or count < state.size:
            return JoinState(count, state.size)
        me = -1 if index is None else index
        if state.owner is None:
            state.owner = me
        if state.owner != me:
            return JoinState(count, state.size)
        return JoinState(count, state.size, [state.parts[i] for i in sorted(state.parts)])

    async def finish_join(self, key: str, *, ttl: float) -> None:
        found = self._read(key)
        state = found if isinstance(found, _Join) else _Join()
        state.parts.clear()
        state.done = True
        self._write(key, state, ttl)

    async def reserve_rate(
        self, key: str, *, interval: float, burst: int, max_wait: float, count: int = 1
    ) -> RateDecision:
        now = time.time()
        found = self._read(key)
        base = max(found if isinstance(found, float) else now, now)
        first = base + interval - burst * interval - now  # the wait for the next place
        granted = min(count, math.floor((max_wait - first) / interval) + 1)
        if granted <= 0:
            return RateDecision(0, first)
        due = base + granted * interval
        self._write(key, due, due - now)
        return RateDecision(granted, first)

    def _slots(self, key: str, now: float) -> dict[str, float]:
        found = self._read(key)
        held = found if isinstance(found, dict) else {}
        return {holder: until for holder, until in held.items() if until > now}

    def _keep_slots(self, key: str, held: dict[str, float], now: float) -> None:
        if held:
            self._write(key, held, max(held.values()) - now)
        else:
            self.hub.values.pop(key, None)

    async def acquire_slot(self, key: str, holder: str, *, limit: int, ttl: float) -> bool:
        now = time.time()
        held = self._slots(key, now)
        if holder not in held and len(held) >= limit:
            return False
        held[holder] = now + ttl
        self._keep_slots(key, held, now)
        return True

    async def queue_for_slot(
        self, key: str, holder: str, waiter: str, *, limit: int, ttl: float, line_ttl: float
    ) -> SlotTurn:
        now = time.time()
        held = self._slots(key, now)
        found = self._read(key + _LINE)
        line: dict[str, tuple[float, float]] = {
            w: (first, seen)
            for w, (first, seen) in (found.items() if isinstance(found, dict) else ())
            if seen > now - line_ttl
        }
        order = sorted(line, key=lambda w: line[w][0])
        ahead = order.index(waiter) if waiter in line else len(order)
        if holder in held or limit - len(held) > ahead:
            held[holder] = now + ttl
            self._keep_slots(key, held, now)
            line.pop(waiter, None)
            self._write(key + _LINE, line, line_ttl)
            return SlotTurn(True, 0)
        line[waiter] = (line[waiter][0] if waiter in line else now, now)
        self._write(key + _LINE, line, line_ttl)
        return SlotTurn(False, ahead)

    async def renew_slot(self, key: str, holder: str, *, ttl: float) -> bool:
        now = time.time()
        held = self._slots(key, now)
        if holder not in held:
            return False
        held[holder] = now + ttl
        self._keep_slots(key, held, now)
        return True

    async def release_slot(self, key: str, holder: str) -> bool:
        now = time.time()
        held = self._slots(key, now)
        if held.pop(holder, None) is None:
            return False
        self._keep_slots(key, held, now)
        return True

    def _holder(self, name: str) -> tuple[str, int] | None:
        held = self._read(f"lease:{name}")
        return held if isinstance(held, tuple) else None

    async def acquire_lease(self, name: str, owner: str, *, ttl: float) -> Lease | None:
        held = self._holder(name)
        if held is not None and held[0] != owner:
            return None
        if held is None:
            last = self._read(f"lease:{name}{_TOKEN}")
            token = (last if isinstance(last, int) else 0) + 1
            self._write(f"lease:{name}{_TOKEN}", token, max(ttl, 30 * 24 * 3600))
        else:
            token = held[1]
        self._write(f"lease:{name}", (owner, token), ttl)
        return Lease(name, owner, token)

    async def renew_lease(self, lease: Lease, *, ttl: float) -> bool:
        if self._holder(lease.name) != (lease.owner, lease.token):
            return False
        self._write(f"lease:{lease.name}", (lease.owner, lease.token), ttl)
        return True

    async def release_lease(self, lease: Lease) -> bool:
        if self._holder(lease.name) != (lease.owner, lease.token):
            return False
        self.hub.values.pop(f"lease:{lease.name}", None)
        return True

    async def set_fenced(self, key: str, value: bytes, *, ttl: float, lease: Lease) -> bool:
        seen = self._read(key + _FENCE)
        if isinstance(seen, int) and lease.token < seen:
            return False
        if self._holder(lease.name) != (lease.owner, lease.token):
            return False
        self._write(key, value, ttl)
        self._write(key + _FENCE, lease.token, ttl)
        return True

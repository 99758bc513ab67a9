"""The ``Store``: state kept by key, shared by every process that uses one server.

Where a :class:`~aq.transport.base.Transport` moves messages, a store keeps
what must be found again by key: the final outcome of a task (``result_ttl``),
and the coordination state of features that need agreement between processes
without a coordinator: who leads (a lease with a fencing token), whether a
thing was done already (set-if-absent), how many distinct members of a group
have reported (an idempotent membership count), how fast something may go
(GCRA rate state) and how many may run at once (expiring counted leases).

Every operation is atomic on the server (a Lua script on Redis; one event-loop
step in memory), and every key it writes expires, or belongs to a lease that
expires, so a process killed at any point leaves nothing behind for ever.

Keys are plain strings chosen by the runtime (``result:<task id>``,
``lease:<name>``); a store adds its own namespace (the URL's ``prefix``).
Values are opaque bytes.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from aq.transport.connection import Connection

__all__ = ["JoinState", "Lease", "RateDecision", "SlotTurn", "Store"]


@dataclass(frozen=True, slots=True)
class Lease:
    """A lease held on ``name`` by ``owner``.

    Attributes:
        name: what is leased (for example the scheduler's leadership).
        owner: who holds it: an id unique to one process.
        token: the fencing token. It grows each time the lease passes to a new
            holder (never when its holder renews it), so a write that carries a
            lower token than the current one comes from a deposed holder and is
            refused (:meth:`Store.set_fenced`).
    """

    name: str
    owner: str
    token: int


@dataclass(frozen=True, slots=True)
class RateDecision:
    """The answer of :meth:`Store.reserve_rate`.

    Attributes:
        granted: how many of the places asked for were reserved (the earliest
            ones; 0 if none).
        wait: seconds from now until the first place granted (0 or less: at
            once); the ``j``-th place granted (from 0) comes ``j * interval``
            later. If none was granted, seconds until the first place that
            could be had.
    """

    granted: int
    wait: float

    @property
    def reserved(self) -> bool:
        """Whether any place was reserved."""
        return self.granted > 0


@dataclass(frozen=True, slots=True)
class SlotTurn:
    """The answer of :meth:`Store.queue_for_slot`.

    Attributes:
        acquired: whether the caller holds a slot now.
        ahead: if not, how many waiters stand before it in the line.
    """

    acquired: bool
    ahead: int


@dataclass(frozen=True, slots=True)
class JoinState:
    """The answer of :meth:`Store.join`.

    Attributes:
        count: how many distinct parts are recorded.
        size: how many parts complete the join, once known (else ``None``).
        parts: every part, in index order, for the caller that completes the
            join, and for every later call under that caller's index until
            :meth:`Store.finish_join` (the completer's work, done again after a
            crash); ``None`` for everyone else.
    """

    count: int
    size: int | None
    parts: list[bytes] | None = None


class Store(Connection):
    """State kept by key with expiry; see the module docstring.

    Use as an async context manager, or call :meth:`connect` and :meth:`close`.
    A store a transport hands out (:meth:`Transport.store`) shares its
    connection: the broker connects the transport, and that store with it.
    """

    # -- values ----------------------------------------------------------------------

    @abc.abstractmethod
    async def get(self, key: str) -> bytes | None:
        """The value at ``key``, or ``None`` if there is none (or it expired)."""

    @abc.abstractmethod
    async def set(self, key: str, value: bytes, *, ttl: float) -> None:
        """Keep ``value`` at ``key`` for ``ttl`` seconds, replacing what was there."""

    async def set_many(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        """:meth:`set` each ``(key, value, ttl)`` of ``items``; a store that can
        do them in one round trip overrides this."""
        await asyncio.gather(*(self.set(key, value, ttl=ttl) for key, value, ttl in items))

    @abc.abstractmethod
    async def set_if_absent(self, key: str, value: bytes, *, ttl: float) -> bool:
        """Keep ``value`` at ``key`` for ``ttl`` seconds unless a value is there;
        whether it was written."""

    @abc.abstractmethod
    async def delete(self, key: str) -> bool:
        """Remove the value at ``key``; whether there was one."""

    # -- counting --------------------------------------------------------------------

    @abc.abstractmethod
    async def add_member(self, key: str, member: str, *, ttl: float) -> int:
        """Add ``member`` to the set at ``key`` and return how many distinct members
        it holds. Adding a member twice counts it once, so a step run again after a
        crash does not count twice. The set expires ``ttl`` seconds after its last
        change."""

    @abc.abstractmethod
    async def members(self, key: str) -> frozenset[str]:
        """The members of the set at ``key`` (empty if there is none)."""

    @abc.abstractmethod
    async def remove_member(self, key: str, member: str) -> bool:
        """Remove ``member`` from the set at ``key``; whether it was there."""

    @abc.abstractmethod
    async def delete_if(self, key: str, value: bytes) -> bool:
        """Remove the value at ``key`` only if it is ``value``; whether it was. A
        holder that gives up what it took cannot remove what a successor took
        after its own value expired."""

    # -- joins -----------------------------------------------------------------------

    @abc.abstractmethod
    async def join(
        self, key: str, index: int | None, part: bytes, *, size: int | None, ttl: float
    ) -> JoinState:
        """Record ``part`` as part ``index`` of the join at ``key``, and learn
        ``size`` (how many parts complete it) if given; either may be ``None``.

        A part recorded twice keeps its first value and counts once, so a step
        run again after a crash neither counts twice nor changes what was kept.
        The one call that finds every part recorded (``count == size``) is the
        join's completer: it gets the parts, in index order, and so does any
        later call under its index (``None``: the call that gave the size) until
        :meth:`finish_join` is called, so a completer that died before it handed
        the parts on is replaced by its own redelivery, and by no one else. The
        join's state expires ``ttl`` seconds after its last change.
        """

    @abc.abstractmethod
    async def finish_join(self, key: str, *, ttl: float) -> None:
        """The completer of the join at ``key`` handed its parts on: drop them,
        and remember for ``ttl`` seconds that the join is done, so no later call
        completes it again."""

    # -- rates and slots -------------------------------------------------------------

    @abc.abstractmethod
    async def reserve_rate(
        self, key: str, *, interval: float, burst: int, max_wait: float, count: int = 1
    ) -> RateDecision:
        """Take places for ``count`` events under the rate kept at ``key``: one
        event every ``interval`` seconds on average, with up to ``burst`` at once
        after a quiet spell (GCRA: the state is one theoretical arrival time).

        Places up to ``max_wait`` seconds ahead are reserved, earliest first
        (callers that ask first get the earlier places); places further ahead are
        not taken, and the answer says how long until one could be. Asking for
        many at once costs one operation: a worker asks for every task that
        starts in one turn of its event loop together. The state expires once it
        no longer limits anything. The clock is the server's, so every process
        that shares the store counts on one clock.
        """

    @abc.abstractmethod
    async def acquire_slot(self, key: str, holder: str, *, limit: int, ttl: float) -> bool:
        """Take one of ``limit`` slots at ``key`` for ``holder`` for ``ttl`` seconds;
        whether it was taken. A holder that has one already keeps it (renewed).
        A slot not renewed within its ``ttl`` frees itself, so a process killed
        while holding one blocks nobody for longer than that."""

    @abc.abstractmethod
    async def queue_for_slot(
        self, key: str, holder: str, waiter: str, *, limit: int, ttl: float, line_ttl: float
    ) -> SlotTurn:
        """:meth:`acquire_slot`, in turn. A caller refused a slot waits in a line at
        ``key`` under ``waiter`` (an id it keeps from one attempt to the next), and a
        slot goes to a caller only while more are free than waiters stand before it,
        so callers get slots in the order they first asked. A waiter keeps its place
        for ``line_ttl`` seconds from each attempt; one that does not come back in
        that time leaves the line."""

    @abc.abstractmethod
    async def renew_slot(self, key: str, holder: str, *, ttl: float) -> bool:
        """Extend ``holder``'s slot at ``key`` to ``ttl`` seconds from now; ``False``
        if it had expired (and may be taken by another)."""

    @abc.abstractmethod
    async def release_slot(self, key: str, holder: str) -> bool:
        """Free ``holder``'s slot at ``key``; whether it held one."""

    # -- leases ----------------------------------------------------------------------

    @abc.abstractmethod
    async def acquire_lease(self, name: str, owner: str, *, ttl: float) -> Lease | None:
        """Take the lease on ``name`` for ``ttl`` seconds if it is free or already
        ``owner``'s (then it is renewed, its token unchanged); ``None`` while another
        owner holds it."""

    @abc.abstractmethod
    async def renew_lease(self, lease: Lease, *, ttl: float) -> bool:
        """Extend ``lease`` by ``ttl`` seconds from now; ``False`` if it was lost
        (expired and taken by someone else, or released)."""

    @abc.abstractmethod
    async def release_lease(self, lease: Lease) -> bool:
        """Give ``lease`` up at once; ``False`` if it was no longer held."""

    @abc.abstractmethod
    async def set_fenced(self, key: str, value: bytes, *, ttl: float, lease: Lease) -> bool:
        """:meth:`set`, but only while ``lease`` is the current lease on its name
        (its holder, its token); whether it was written. A holder that lost its
        lease without noticing (a long pause) cannot overwrite its successor's
        state."""

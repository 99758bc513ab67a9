"""Leader election by a lease in the store, and the choice of election for a broker.

:class:`LeaseElection` campaigns by taking the store lease ``lease:<name>``
(:meth:`Store.acquire_lease`, set-if-absent with a TTL), looking again every
:attr:`LeaseElection.poll` seconds while another process holds it. Once it
leads it renews the lease every third of ``lease_time``. It steps down when a
renewal is refused (the lease lapsed and passed on) and also, without waiting
for the store to answer, once ``lease_time`` minus a margin has passed since
the last renewal that worked (counted from before it was sent): so a leader
cut off from the store stops acting as one before the lease can pass to
another process. The lease carries a fencing token, which the scheduler's
writes present (:meth:`Store.set_fenced`), so a leader that was paused and
missed all of this still cannot overwrite its successor's state.

:func:`election_for` prefers an election the transport runs itself
(RabbitMQ's single-active-consumer queue) and falls back to the store lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math

from aq import background
from aq.broker import Broker
from aq.errors import BrokerError, ConfigurationError
from aq.logs import event
from aq.transport.election import Election
from aq.transport.store import Lease, Store

__all__ = ["LeaseElection", "check_scheduler", "election_for"]

log = logging.getLogger("aq.scheduler")

#: Fraction of the lease time a leader stops short of it when renewals fail.
_MARGIN = 0.1


class LeaseElection(Election):
    """Leadership of ``name`` by a lease in ``store``; see the module docstring.

    Args:
        store: where the lease is kept.
        name: what is led (``"scheduler"``).
        owner: this process's id, unique among the campaigners.
        lease_time: seconds the lease lasts without renewal: the longest a dead
            leader keeps the others waiting.
    """

    def __init__(self, store: Store, name: str, owner: str, lease_time: float) -> None:
        self.store = store
        self.name = name
        self.owner = owner
        self.lease_time = lease_time
        #: Seconds between a follower's attempts to take the lease.
        self.poll = min(1.0, lease_time / 10)
        self._lease: Lease | None = None
        #: Event-loop time until which the last renewal guarantees the lease.
        self._valid_until = -math.inf
        self._leading = asyncio.Event()
        self._lost = asyncio.Event()
        self._lost.set()
        self._task: asyncio.Task[None] | None = None

    @property
    def leading(self) -> bool:
        # Checked against the clock too: a process paused past its lease (SIGSTOP)
        # knows it lost its place the moment it runs again, before any timer fires.
        return self._leading.is_set() and asyncio.get_running_loop().time() < self._valid_until

    @property
    def lease(self) -> Lease | None:
        return self._lease if self.leading else None

    async def campaign(self) -> None:
        if self._task is None:
            self._task = background.start(f"aq-election-{self.name}", self._run)
        await self._leading.wait()

    async def wait_lost(self) -> None:
        await self._lost.wait()

    async def resign(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        lease, self._lease = self._lease, None
        self._step_down(quietly=True)
        if lease is not None:
            with contextlib.suppress(BrokerError):
                await self.store.release_lease(lease)

    def _step_down(self, *, quietly: bool = False) -> None:
        if self._leading.is_set() and not quietly:
            event(log, logging.WARNING, "election.lost", name=self.name, owner=self.owner)
        self._leading.clear()
        self._lost.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            try:
                lease = await self.store.acquire_lease(self.name, self.owner, ttl=self.lease_time)
            except BrokerError as exc:
                event(log, logging.WARNING, "election.store_unavailable", error=exc)
                lease = None
            if lease is None:
                await asyncio.sleep(self.poll)
                continue
            self._lease = lease
            self._valid_until = asked + self.lease_time * (1 - _MARGIN)
            self._lost.clear()
            self._leading.set()
            event(log, logging.INFO, "election.won", name=self.name, token=lease.token)
            await self._hold(lease, asked)
            self._step_down()

    async def _hold(self, lease: Lease, renewed: float) -> None:
        """Renew ``lease`` until a renewal is refused or the lease may have lapsed."""
        loop = asyncio.get_running_loop()
        next_try = renewed + self.lease_time / 3
        while True:
            limit = renewed + self.lease_time * (1 - _MARGIN)
            await asyncio.sleep(max(0.0, min(next_try, limit) - loop.time()))
            asked = loop.time()
            if asked >= limit:
                event(log, logging.WARNING, "election.renew_failed", name=self.name)
                return
            try:
                async with asyncio.timeout(limit - asked):
                    kept = await self.store.renew_lease(lease, ttl=self.lease_time)
            except (BrokerError, TimeoutError):
                next_try = loop.time() + self.poll
                continue
            if not kept:
                return
            renewed, next_try = asked, asked + self.lease_time / 3
            self._valid_until = renewed + self.lease_time * (1 - _MARGIN)


def check_scheduler(broker: Broker) -> None:
    """Refuse, at start-up, a broker on which schedulers cannot elect a leader.

    Raises:
        aq.ConfigurationError: the broker has no store and cannot elect by itself.
    """
    if broker.store is None and broker.transport.election("scheduler") is None:
        raise ConfigurationError(
            "the scheduler needs a store or a broker that elects a leader itself: pass "
            "aq.Broker(..., store='redis://...')"
        )


def election_for(broker: Broker, name: str, owner: str, lease_time: float) -> Election:
    """The election of ``name`` on ``broker``: its transport's own, or a store lease.

    Raises:
        aq.ConfigurationError: the broker has neither.
    """
    check_scheduler(broker)
    election = broker.transport.election(name)
    if election is not None:
        return election
    assert broker.store is not None
    return LeaseElection(broker.store, name, owner, lease_time)

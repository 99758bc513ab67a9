"""``aq.Scheduler``: sends the broker's schedules' fires while this process leads.

Any number of schedulers may run (``aq scheduler APP``, or ``aq worker APP
--scheduler``); they campaign in one election (:mod:`aq.scheduling.leadership`)
and only the leader fires. The leader:

1. reads every schedule (from code, and those the store keeps) and, where a
   store exists, the due time of each one's last fire;
2. sleeps until the earliest next due time, waking early when it loses its
   place or a control message says the stored schedules changed;
3. for each schedule due, asks :func:`~aq.scheduling.spec.due_fires` what to
   send (a fire later than ``grace`` is skipped unless ``catch_up`` says to
   send it) and sends each fire as a task message whose id is the schedule's
   name and the due time, delayed by the schedule's jitter. Where a store
   exists the fire's id is first claimed with set-if-absent for a lease time,
   so a fire is sent once even if two schedulers briefly both believe they
   lead, and marked sent once it was (a claim left by a scheduler that died
   before sending lapses, and the next leader sends the fire); then the due
   time is written as the last fire (fenced by the lease's token).

Without a store (RabbitMQ alone), a new leader has no record of its
predecessor's fires and starts from the moment it took over: a fire due
during the hand-over is missed rather than sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
import uuid
from dataclasses import dataclass

from aq import background
from aq.broker import Broker
from aq.errors import BrokerError, MessageDecodeError
from aq.logs import event
from aq.message import TaskMessage, decode_control
from aq.scheduling.book import KEEP
from aq.scheduling.entry import Schedule, fire_id
from aq.scheduling.leadership import election_for
from aq.scheduling.spec import due_fires, jitter_for
from aq.transport.base import Inbox
from aq.transport.election import Election
from aq.transport.store import Lease, Store
from aq.worker.options import DEFAULT_LEASE_TIME

__all__ = ["DEFAULT_LEASE_TIME", "Scheduler"]

log = logging.getLogger("aq.scheduler")

#: Seconds between reads of the stored schedules, beside the control messages.
_RELOAD_EVERY = 60.0
#: Seconds a fire's id stays marked sent at the least; a fire sent late (catching
#: up) is kept as much longer as it was late.
_FIRED_TTL = 3600.0
#: The state of a fire's id: claimed by a scheduler about to send it, or sent.
_CLAIMED, _SENT = "claimed", "sent"
#: Seconds between looks at a fire claimed by a scheduler that may have died.
_CLAIM_LOOK = 0.1


@dataclass(slots=True)
class _Plan:
    """A schedule as the leader follows it."""

    schedule: Schedule
    last: float
    next_due: float
    paused: bool = False


class Scheduler:
    """Fires ``broker``'s schedules while this process leads; see the module docstring.

    Args:
        broker: the app's broker, with its tasks and schedules.
        lease_time: with a store lease, how long a dead leader keeps the others
            waiting; it renews every third of it.
    """

    def __init__(self, broker: Broker, *, lease_time: float = DEFAULT_LEASE_TIME) -> None:
        self.broker = broker
        self.lease_time = lease_time
        #: This process among the schedulers: host, pid and a random part.
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.fired = 0
        self._changed = asyncio.Event()
        self._changed_names: set[str] = set()
        self._leads = asyncio.Event()
        self._election: Election | None = None
        self._sending: set[asyncio.Future[bool]] = set()
        self._plans: dict[str, _Plan] = {}

    @property
    def paused(self) -> frozenset[str]:
        """The schedules this scheduler, while it leads, has read as paused."""
        return frozenset(name for name, plan in self._plans.items() if plan.paused)

    @property
    def leading(self) -> bool:
        """Whether this scheduler leads now (and so fires)."""
        return self._election is not None and self._election.leading

    async def wait_leading(self) -> None:
        """Return once this scheduler has begun to lead."""
        await self._leads.wait()

    async def run(self) -> None:
        """Campaign, and fire while leading, until cancelled."""
        broker = self.broker
        await broker.connect()
        election = self._election = election_for(broker, "scheduler", self.owner, self.lease_time)
        control = await broker.transport.subscribe_control()
        listener = background.start("aq-scheduler-control", lambda: self._listen(control))
        event(log, logging.INFO, "scheduler.started", owner=self.owner)
        try:
            while True:
                await election.campaign()
                event(log, logging.INFO, "scheduler.leading", owner=self.owner)
                self._leads.set()
                try:
                    await self._lead(election)
                finally:
                    self._leads.clear()
        finally:
            listener.cancel()
            await asyncio.gather(listener, *self._sending, return_exceptions=True)
            await election.resign()
            await control.close()

    async def _listen(self, control: Inbox) -> None:
        while True:
            body = await control.get()
            try:
                command = decode_control(body, self.broker.codec)
            except MessageDecodeError:
                continue  # the workers log it
            if command.op == "schedules":  # task_id: the schedule that changed, or ""
                self._changed_names.add(command.task_id)
                self._changed.set()

    async def _lead(self, election: Election) -> None:
        took_over = time.time()
        lease = election.lease  # every record of this term is fenced by it
        self._changed_names.clear()  # a leader starts by reading every schedule
        self._changed.clear()
        self._changed_names.add("")
        plans: dict[str, _Plan] = {}
        self._plans = plans
        loaded = marked = -math.inf
        while election.leading:
            changed, self._changed_names = self._changed_names, set()
            self._changed.clear()
            try:
                if "" in changed or time.monotonic() - loaded > _RELOAD_EVERY:
                    plans, loaded = await self._read_plans(plans, took_over), time.monotonic()
                    self._plans = plans
                else:
                    for name in changed:
                        await self._replan(plans, name, took_over)
            except BrokerError as exc:  # the store is out of reach: go on with what we have
                event(log, logging.WARNING, "scheduler.store_unavailable", error=exc)
                self._changed_names |= changed or {""}
                await self._wait(election, 1.0)
                continue
            if time.monotonic() - marked > self.lease_time / 3:
                await self._mark_active(election)
                marked = time.monotonic()
            now = time.time()
            for plan in plans.values():
                if plan.next_due <= now and plan.paused:
                    await self._skip_paused(plan, now, lease)
                elif plan.next_due <= now and election.leading:
                    await self._fire_due(plan, now, election, lease)
            wake = min((p.next_due for p in plans.values()), default=math.inf)
            timeout = min(wake - time.time(), self.lease_time / 3, _RELOAD_EVERY)
            await self._wait(election, max(0.0, timeout))

    async def _skip_paused(self, plan: _Plan, now: float, lease: Lease | None) -> None:
        """Send nothing of a paused schedule, and record its skipped due times as
        handled, so that after a resume no leader sends them late."""
        spec = plan.schedule.spec
        plan.last = spec.previous_before(math.nextafter(now, math.inf))
        plan.next_due = spec.next_after(plan.last)
        await self._record(plan.schedule.name, plan.last, lease)

    async def _wait(self, election: Election, timeout: float) -> None:
        """Sleep ``timeout`` seconds, or less if leadership is lost or schedules change."""
        waits = [
            asyncio.ensure_future(election.wait_lost()),
            asyncio.ensure_future(self._changed.wait()),
        ]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()

    async def _read_plans(self, old: dict[str, _Plan], took_over: float) -> dict[str, _Plan]:
        """A plan per schedule; a schedule followed already keeps its own."""
        schedules = await self.broker.schedules.all()
        paused = await self.broker.schedules.paused()
        made = await asyncio.gather(*(self._plan(s, old.get(s.name), took_over) for s in schedules))
        for plan in made:
            plan.paused = plan.schedule.name in paused
        return {plan.schedule.name: plan for plan in made}

    async def _replan(self, plans: dict[str, _Plan], name: str, took_over: float) -> None:
        """Follow the schedule ``name`` as the store has it now (one added, replaced or
        removed at run time), leaving the others as they are."""
        book = self.broker.schedules
        schedule = book.code.get(name) or await book.stored_one(name)
        if schedule is None:
            plans.pop(name, None)
        else:
            plan = plans[name] = await self._plan(schedule, plans.get(name), took_over)
            plan.paused = name in await book.paused()

    async def _plan(self, schedule: Schedule, kept: _Plan | None, took_over: float) -> _Plan:
        if kept is not None and kept.schedule == schedule:
            return kept
        last = await self.broker.schedules.last_fire(schedule.name)
        if last is None:  # never fired: from the takeover
            last = took_over
        if schedule.added_at is not None:  # nothing due before it was (last) added
            last = max(last, schedule.added_at)
        return _Plan(schedule, last, schedule.spec.next_after(last))

    async def _mark_active(self, election: Election) -> None:
        store = self.broker.store
        if store is None:
            return
        lease = election.lease
        mark = self.owner + (f" (token {lease.token})" if lease is not None else "")
        with contextlib.suppress(BrokerError):
            await store.set("scheduler:active", mark.encode(), ttl=self.lease_time)

    async def _fire_due(
        self, plan: _Plan, now: float, election: Election, lease: Lease | None
    ) -> None:
        """Send what is due of ``plan`` at ``now``, and move it on."""
        schedule = plan.schedule
        fires, skipped = due_fires(
            schedule.spec, last=plan.last, now=now, grace=schedule.grace, catch_up=schedule.catch_up
        )
        if skipped:
            event(log, logging.WARNING, "schedule.skipped", schedule=schedule.name, count=skipped)
        for due in fires:
            if not election.leading:
                return
            # Shielded: a scheduler stopped while it sends a fire finishes sending it
            # (and marks it sent) before it gives its place up.
            sending = asyncio.ensure_future(self._fire(schedule, due))
            self._sending.add(sending)
            sending.add_done_callback(self._sending.discard)
            if not await asyncio.shield(sending):
                plan.next_due = time.time() + 1.0  # the broker is down: try again soon
                return
            plan.last = due
            await self._record(schedule.name, due, lease)
        newest = schedule.spec.previous_before(math.nextafter(now, math.inf))
        plan.last = max(plan.last, newest)
        plan.next_due = schedule.spec.next_after(plan.last)

    async def _fire(self, schedule: Schedule, due: float) -> bool:
        """Send the fire of ``schedule`` due at ``due``; whether it was sent (or had
        been already)."""
        broker, store = self.broker, self.broker.store
        task_id = fire_id(schedule.name, due)
        taken, claim = f"fired:{task_id}", f"{self.owner} {_CLAIMED}".encode()
        try:
            if store is not None:
                claimed = await self._claim(store, taken, claim)
                if claimed is not True:
                    return claimed == _SENT  # sent by another, or to be tried again
            await broker.publish(
                self._message(schedule, due, task_id), broker.tasks.get(schedule.task)
            )
            if store is not None:  # sent: kept for as long as the fire could come up again
                sent = f"{self.owner} {_SENT}".encode()
                ttl = max(_FIRED_TTL, time.time() - due + 2 * schedule.grace + self.lease_time)
                await store.set(taken, sent, ttl=ttl)
        except BrokerError as exc:
            event(log, logging.ERROR, "schedule.unsent", schedule=schedule.name, error=exc)
            if store is not None:
                with contextlib.suppress(BrokerError):
                    await store.delete_if(taken, claim)
            return False
        self.fired += 1
        event(log, logging.DEBUG, "schedule.fired", schedule=schedule.name, task_id=task_id)
        return True

    async def _claim(self, store: Store, taken: str, claim: bytes) -> bool | str:
        """Claim a fire's id before sending it: ``True`` if this scheduler is to send
        it, ``_SENT`` if another did, ``_CLAIMED`` if another still holds a claim.

        A claim lasts a lease time, and becomes a record that the fire was sent
        once it was. A claim left by a scheduler that died before it sent the fire
        is waited out (it lapses within a lease time), so the fire is not lost.
        """
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.lease_time + 1.0
        while True:
            if await store.set_if_absent(taken, claim, ttl=self.lease_time):
                return True
            held = await store.get(taken)
            if held == claim:  # our own, from an attempt whose answer was lost
                return True
            if held is not None and not held.endswith(_CLAIMED.encode()):
                return _SENT
            if held is not None and loop.time() > give_up:
                return _CLAIMED  # a claim with a longer lease time: try again later
            if held is not None:  # claimed, not yet sent: wait until sent or lapsed
                await asyncio.sleep(_CLAIM_LOOK)

    def _message(self, schedule: Schedule, due: float, task_id: str) -> TaskMessage:
        task = self.broker.tasks.get(schedule.task)
        jitter = jitter_for(schedule.name, due, schedule.spec.jitter)
        priority = schedule.priority
        if priority is None:
            priority = task.config.priority if task is not None else 0
        queue = schedule.queue or (task.config.queue if task else self.broker.default_queue)
        return TaskMessage(
            id=task_id,
            task=schedule.task,
            queue=queue,
            args=list(schedule.args),
            kwargs=dict(schedule.kwargs),
            headers={"aq-schedule": schedule.name, "aq-due": due, "aq-scheduler": self.owner},
            max_attempts=task.config.max_attempts if task is not None else None,
            priority=priority,
            eta=due + jitter if jitter else None,
            correlation_id=task_id,
            created_at=time.time(),
        )

    async def _record(self, name: str, due: float, lease: Lease | None) -> None:
        """Write ``due`` as the last fire of ``name``, fenced by the term's lease
        (RabbitMQ's election has none: then a plain write)."""
        store = self.broker.store
        if store is None:
            return
        key, value = f"schedule-last:{name}", repr(due).encode()
        with contextlib.suppress(BrokerError):
            if lease is None:
                await store.set(key, value, ttl=KEEP)
            elif not await store.set_fenced(key, value, ttl=KEEP, lease=lease):
                event(log, logging.WARNING, "scheduler.fenced", schedule=name, token=lease.token)

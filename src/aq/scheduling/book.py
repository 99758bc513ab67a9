"""``ScheduleBook``: a broker's schedules, from code and kept in the store, and
what the store says of them.

Schedules defined in code live in the book itself, in every process that
imports the app. Schedules added at run time (:meth:`ScheduleBook.add`) are
kept in the store until removed: the name in the set ``schedules:all`` and
the schedule at ``schedule:<name>``; after either change a control message
naming the schedule tells the running schedulers to read that one again. The scheduler keeps, per
schedule, the due time of its last fire at ``schedule-last:<name>``, and its
leader marks itself at ``scheduler:active``; ``aq schedules`` reads both.
The names of paused schedules (from code or not) are the set
``schedules:paused``: the scheduler sends no fire of a paused schedule, and
takes a resumed one up from its next due time.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Unpack

from aq.errors import ConfigurationError, MessageDecodeError
from aq.message import ControlMessage, encode_control
from aq.scheduling.entry import Schedule, ScheduleOptions, define_schedule, schedule_from_json
from aq.scheduling.spec import ScheduleSpec

if TYPE_CHECKING:
    from aq.broker import Broker
    from aq.task import AnyTask

__all__ = ["ScheduleBook", "ScheduleStatus"]

#: How long a schedule added at run time is kept: until removed, in practice.
KEEP = 10 * 365 * 86400.0
_NAMES = "schedules:all"
_PAUSED = "schedules:paused"


@dataclass(frozen=True, slots=True)
class ScheduleStatus:
    """A schedule as ``aq schedules`` shows it."""

    schedule: Schedule
    next_fire: float
    last_fire: float | None


class ScheduleBook:
    """The schedules of one broker; see the module docstring."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        #: Schedules defined in code, by name.
        self.code: dict[str, Schedule] = {}

    def define(
        self,
        task: AnyTask,
        spec: ScheduleSpec,
        *,
        name: str | None = None,
        **options: Unpack[ScheduleOptions],
    ) -> Schedule:
        """Add a schedule defined in code (see :meth:`aq.Broker.schedule`)."""
        schedule = define_schedule(task, spec, self._broker.serializer, name=name, **options)
        if schedule.name in self.code:
            raise ConfigurationError(
                f"a schedule named {schedule.name!r} is defined already; pass name=... "
                "to tell them apart"
            )
        self.code[schedule.name] = schedule
        return schedule

    async def add(
        self, task: AnyTask, spec: ScheduleSpec, *, name: str, **options: Unpack[ScheduleOptions]
    ) -> Schedule:
        """Keep a schedule in the store (see :meth:`aq.Broker.add_schedule`)."""
        broker = self._broker
        store = broker.require_store("schedules added at run time")
        schedule = define_schedule(
            task, spec, broker.serializer, name=name, added_at=time.time(), **options
        )
        if schedule.name in self.code:
            raise ConfigurationError(
                f"schedule {schedule.name!r} is defined in code; give the one added at run "
                "time another name"
            )
        await broker.connect()
        body = broker.codec.dumps(schedule.to_json())
        await store.set(f"schedule:{schedule.name}", body, ttl=KEEP)
        await store.add_member(_NAMES, schedule.name, ttl=KEEP)
        await self._announce(schedule.name)
        return schedule

    async def remove(self, name: str) -> bool:
        """Remove a schedule added at run time; whether there was one."""
        broker = self._broker
        store = broker.require_store("schedules added at run time")
        await broker.connect()
        removed = await store.delete(f"schedule:{name}")
        await store.delete(f"schedule-last:{name}")
        await store.remove_member(_NAMES, name)
        await self._announce(name)
        return removed

    async def pause(self, name: str) -> None:
        """Stop firing schedule ``name`` until :meth:`resume` (fires due meanwhile
        are not sent).

        Raises:
            aq.ConfigurationError: no store, or no schedule of that name.
        """
        store = self._broker.require_store("pausing schedules")
        await self._broker.connect()
        if name not in self.code and await self.stored_one(name) is None:
            raise ConfigurationError(f"there is no schedule named {name!r}")
        await store.add_member(_PAUSED, name, ttl=KEEP)
        await self._announce(name)

    async def resume(self, name: str) -> bool:
        """Fire schedule ``name`` again, from its next due time; whether it was paused."""
        store = self._broker.require_store("pausing schedules")
        await self._broker.connect()
        resumed = await store.remove_member(_PAUSED, name)
        await self._announce(name)
        return resumed

    async def paused(self) -> frozenset[str]:
        """The names of the paused schedules (none without a store)."""
        store = self._broker.store
        return await store.members(_PAUSED) if store is not None else frozenset()

    async def _announce(self, name: str) -> None:
        """Tell running schedulers that the stored schedule ``name`` changed."""
        broker = self._broker
        command = ControlMessage("schedules", name)
        await broker.transport.broadcast(encode_control(command, broker.codec))

    async def stored(self) -> list[Schedule]:
        """The schedules added at run time, read from the store (none without one).
        One that cannot be read is skipped: it never stops the others."""
        store = self._broker.store
        if store is None:
            return []
        names = sorted(await store.members(_NAMES))
        found = await asyncio.gather(*(self.stored_one(name) for name in names))
        return [schedule for schedule in found if schedule is not None]

    async def stored_one(self, name: str) -> Schedule | None:
        """The schedule ``name`` added at run time, if the store holds one it can read."""
        store = self._broker.store
        body = await store.get(f"schedule:{name}") if store is not None else None
        if body is None:
            return None
        try:
            return schedule_from_json(self._broker.codec.loads(body))
        except (ConfigurationError, MessageDecodeError):
            return None

    async def all(self) -> list[Schedule]:
        """Every schedule: from code, then added at run time."""
        return [*self.code.values(), *await self.stored()]

    async def last_fire(self, name: str) -> float | None:
        """The due time of schedule ``name``'s last fire, if the store knows it."""
        store = self._broker.store
        kept = await store.get(f"schedule-last:{name}") if store is not None else None
        try:
            return float(kept) if kept is not None else None
        except ValueError:
            return None

    async def active(self) -> str | None:
        """Who leads the schedulers, as the leader wrote it (None: no store, or none)."""
        store = self._broker.store
        kept = await store.get("scheduler:active") if store is not None else None
        return kept.decode(errors="replace") if kept is not None else None

    async def status(self, now: float | None = None) -> list[ScheduleStatus]:
        """Every schedule with its next and last fire."""
        now = time.time() if now is None else now
        schedules = await self.all()
        lasts = await asyncio.gather(*(self.last_fire(s.name) for s in schedules))
        return [
            ScheduleStatus(s, s.spec.next_after(max(now, s.added_at or now)), last)
            for s, last in zip(schedules, lasts, strict=True)
        ]

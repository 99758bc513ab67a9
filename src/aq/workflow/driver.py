"""Carrying out a planner's instructions: bulk publishes, store joins, outcomes.

:func:`drive` takes the instructions of a :class:`~aq.workflow.steps.Planner`
in order. Messages are encoded as they come (an argument that cannot be sent
is named with its step) and published a window at a time, concurrently, so a
group of 10,000 costs Redis a few pipelined commands and RabbitMQ a few
windows of publisher confirms, not 10,000 round trips. A join part goes to the
store; the one call that completes a join gets every part, plans what comes
next with them, publishes it as one copy (``once`` in the flow), and only then
marks the join finished. A completer that dies first is replaced by its own
redelivery, which sends a second copy; workers run the first copy that
reaches them and drop the other (:meth:`aq.workflow.advance.Advancer.admits`),
so a chord's body runs once. Outcomes and the size of a lazily started group go to the
caller's callbacks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING

from aq.errors import SerializationError
from aq.message import TaskMessage, new_id
from aq.workflow.steps import GroupSize, Instruction, JoinPart, Outcome, Planner

if TYPE_CHECKING:
    from aq.broker import Broker

__all__ = ["DEFAULT_WINDOW", "Driver"]

#: Messages published at once, at most.
DEFAULT_WINDOW = 1000


class Driver:
    """Carries out instructions for one workflow on ``broker``.

    Args:
        broker: where messages go, and whose store keeps the joins.
        planner: plans what a completed join starts.
        on_outcome: called with each :class:`Outcome` (a value for the handle),
            and whether it must be handed off before this call returns: an
            outcome a completed join brings must reach the handle before the
            join is marked done (no redelivery would bring it again).
        on_size: called with the size of the handle's lazily started group.
        window: messages published at once, at most.
    """

    def __init__(
        self,
        broker: Broker,
        planner: Planner,
        on_outcome: Callable[[Outcome, bool], Awaitable[None]],
        on_size: Callable[[int], None] | None = None,
        window: int = DEFAULT_WINDOW,
    ) -> None:
        self.broker = broker
        self.planner = planner
        self.on_outcome = on_outcome
        self.on_size = on_size
        self.window = window
        #: Whether any publish was attempted (some messages may have gone out).
        self.attempted = False
        self._joins = 0  # how many completed joins are being carried on now
        self._batch: list[tuple[TaskMessage, bytes]] = []

    async def stage(self, instructions: Iterator[Instruction]) -> None:
        """Encode the messages of ``instructions`` and keep them for :meth:`flush`
        (what else they hold is carried out at once)."""
        for instruction in instructions:
            if isinstance(instruction, TaskMessage):
                self._batch.append((instruction, await self._encode(instruction)))
            else:
                await self._run(iter((instruction,)))

    async def run(self, instructions: Iterator[Instruction]) -> None:
        """Carry out ``instructions``; everything is published when it returns.

        Raises:
            aq.SerializationError: a message cannot be encoded (naming its step).
            aq.ConfigurationError: a join needs a store and the broker has none.
            aq.BrokerError: the broker refused a message or cannot be reached.
        """
        await self._run(instructions)
        await self.flush()

    async def _run(self, instructions: Iterator[Instruction], once: str | None = None) -> None:
        for instruction in instructions:
            if isinstance(instruction, TaskMessage):
                if once is not None and instruction.workflow is not None:
                    instruction.workflow["once"] = once
                self._batch.append((instruction, await self._encode(instruction)))
                if len(self._batch) >= self.window:
                    await self.flush()
            elif isinstance(instruction, JoinPart):
                await self._join(instruction.join, instruction, instruction.size)
            elif isinstance(instruction, GroupSize):
                if instruction.join is not None:
                    await self._join(instruction.join, instruction, instruction.size)
                elif self.on_size is not None:
                    self.on_size(instruction.size)
            else:
                await self.on_outcome(instruction, self._joins > 0)

    async def _encode(self, message: TaskMessage) -> bytes:
        broker = self.broker
        try:
            return await broker.prepare(message, broker.tasks.get(message.task))
        except SerializationError as exc:
            step = (message.workflow or {}).get("step", message.task)
            raise SerializationError(f"workflow step {step}: {exc}") from exc

    async def _join(self, join: str, part: JoinPart | GroupSize, size: int | None) -> None:
        broker = self.broker
        store = broker.require_store("a chord, or a group followed by more steps,")
        key = f"join:{join}"
        ttl = broker.workflow_ttl
        if isinstance(part, JoinPart):
            state = await store.join(
                key, part.index, broker.codec.dumps(part.value), size=size, ttl=ttl
            )
        else:
            state = await store.join(key, None, b"", size=size, ttl=ttl)
        if state.parts is None:
            return
        loads = broker.codec.loads
        values = [loads(p) for p in state.parts]
        # Sent as one copy: if this completer dies before finish_join, its
        # redelivery sends another, and workers run whichever comes first.
        self._joins += 1
        try:
            await self._run(self.planner.proceed(values, part.then, join), once=new_id())
            await self.flush()
        finally:
            self._joins -= 1
        await store.finish_join(key, ttl=ttl)

    async def flush(self) -> None:
        """Publish the messages encoded so far."""
        batch, self._batch = self._batch, []
        if batch:
            self.attempted = True
            await self.broker.publish_prepared(batch)

"""``expires`` holds until a task starts, including the time it waits for its limits."""

from __future__ import annotations

import asyncio
import time

import aq
from aq.testing import running_worker

EXPIRES = 0.2
#: Slack between the worker's expiry check and the task reading the clock.
SLACK = 0.05


async def test_a_task_whose_turn_comes_after_it_expired_is_dead_lettered_not_run(
    broker: aq.Broker,
) -> None:
    ran_at: dict[int, float] = {}

    # A burst of 10 starts at once, then one every 0.1 s: the 14th waits 0.4 s.
    @broker.task(rate_limit="10/s")
    async def limited(i: int) -> None:
        ran_at[i] = time.time()

    async with running_worker(broker) as worker:
        handles: list[aq.TaskHandle[None]] = []
        latest_expiry: list[float] = []
        for i in range(14):
            handles.append(await limited.options(expires=EXPIRES).kiq(i))
            latest_expiry.append(time.time() + EXPIRES)
        outcomes = await asyncio.gather(
            *(h.result(timeout=10) for h in handles), return_exceptions=True
        )
        await worker.wait_idle()

    expired = [i for i, outcome in enumerate(outcomes) if isinstance(outcome, aq.TaskExpired)]
    assert sorted([*expired, *ran_at]) == list(range(14))
    late = {i: t - latest_expiry[i] for i, t in ran_at.items() if t > latest_expiry[i] + SLACK}
    assert late == {}, "these ran this many seconds after they expired"
    assert expired, "the last ones' turn came after they expired"
    assert all(str(outcomes[i]).endswith("expired before it ran") for i in expired)
    dead = await broker.admin.dead_letters("default")
    assert [d.reason for d in dead] == ["expired before it ran"] * len(expired)

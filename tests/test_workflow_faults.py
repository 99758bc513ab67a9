"""Workflows when something goes wrong on the way: a step's hand-off fails part
way, a message from elsewhere is malformed, callbacks cannot be sent, a
workflow's id is reused. On the memory broker, with faults put in by replacing
one of the broker's own methods for the length of a test."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
import pytest

import aq
from aq.message import TaskMessage
from aq.testing import running_worker
from tests.conftest import broker_url

pytestmark = pytest.mark.timeout(30)

Batch = Sequence[tuple[TaskMessage, bytes]]


def memory_broker(**options: Any) -> aq.Broker:
    return aq.Broker(broker_url("memory"), **options)


def fail_once(
    broker: aq.Broker, when: Callable[[Batch], bool], error: Exception
) -> Callable[[Batch], Awaitable[None]]:
    """Make ``broker.publish_prepared`` raise ``error`` the first time ``when``
    holds for a batch; return the real method."""
    real = broker.publish_prepared
    tripped = False

    async def flaky(batch: Batch) -> None:
        nonlocal tripped
        if not tripped and when(batch):
            tripped = True
            raise error
        await real(batch)

    broker.publish_prepared = flaky  # type: ignore[method-assign]
    return real


def has_task(name: str) -> Callable[[Batch], bool]:
    return lambda batch: any(message.task == name for message, _ in batch)


async def test_a_link_runs_once_when_an_outage_interrupts_the_next_step() -> None:
    broker = memory_broker()
    linked: list[int] = []

    @broker.task(name="first")
    async def first() -> int:
        return 1

    @broker.task(name="second")
    async def second(x: int) -> int:
        return x + 1

    @broker.task(name="cb")
    async def cb(x: int) -> None:
        linked.append(x)

    await broker.startup()
    fail_once(broker, has_task("second"), aq.BrokerUnavailable("a blip"))
    async with broker, running_worker(broker) as worker:
        handle = await aq.chain(first.s().options(link=cb.s()), second.s()).kiq()
        assert await handle.result(timeout=10) == 2
        await worker.wait_idle()
    assert linked == [1]


async def test_a_chord_bodys_link_error_runs_once_after_an_outage_while_sending_it() -> None:
    broker = memory_broker()
    alerts: list[str] = []

    @broker.task(name="member")
    async def member(x: int) -> int:
        if x == 1:
            raise ValueError("member 1 failed")
        return x

    @broker.task(name="total")
    async def total(xs: list[int]) -> int:
        return sum(xs)

    @broker.task(name="alert")
    async def alert(failure: aq.Failure) -> None:
        alerts.append(failure["step"])

    await broker.startup()
    fail_once(broker, has_task("alert"), aq.BrokerUnavailable("a blip"))
    body = total.s().options(link_error=alert.s())
    async with broker, running_worker(broker) as worker:
        handle = await aq.chord([member.s(0), member.s(1), member.s(2)], body).kiq()
        with pytest.raises(aq.TaskFailed, match="member 1 failed"):
            await handle.result(timeout=10)
        await worker.wait_idle()
    assert alerts == ["chord member 2 (member)"]


async def test_an_outcome_a_completed_join_brings_is_sent_again_after_a_crash() -> None:
    broker = memory_broker()
    runs: list[int] = []

    @broker.task(name="square")
    async def square(x: int) -> int:
        runs.append(x)
        return x * x

    await broker.startup()
    transport = broker.transport
    real = transport.send_reply
    crashed = False

    async def dies_once(address: str, body: bytes) -> None:
        nonlocal crashed
        reply = json.loads(body)
        if not crashed and reply.get("member") == 0 and isinstance(reply["payload"], list):
            crashed = True  # the inner group's list, after its join was completed
            raise RuntimeError("the worker dies here")  # its message is delivered again
        await real(address, body)

    transport.send_reply = dies_once  # type: ignore[method-assign]
    async with broker, running_worker(broker) as worker:
        handle = await aq.group(aq.group(square.s(1), square.s(2)), square.s(3)).kiq()
        assert await handle.result(timeout=10) == [[1, 4], 9]
        await worker.wait_idle()
    assert crashed
    assert sorted(set(runs)) == [1, 2, 3]


async def test_two_workflows_sent_under_one_id_both_get_the_result() -> None:
    broker = memory_broker()

    @broker.task(name="echo")
    async def echo(x: int) -> int:
        return x

    @broker.task(name="cb")
    async def cb(x: int) -> None:
        return None

    async with broker, running_worker(broker):
        one = await echo.options(task_id="shared", link=cb.s()).kiq(1)
        two = await echo.options(task_id="shared", link=cb.s()).kiq(2)
        results = {await one.result(timeout=10), await two.result(timeout=10)}
    assert results <= {1, 2}


async def test_a_malformed_field_in_a_later_step_is_dead_lettered_before_the_step_runs() -> None:
    broker = memory_broker()
    ran: list[int] = []

    @broker.task(name="step")
    async def step(x: int) -> int:
        ran.append(x)
        return x

    flow = {
        "root": "r1",
        "step": "chain step 1 (step)",
        "then": [{"chain": [{"task": "step", "queue": "default", "delay": "soon"}]}],
    }
    message = TaskMessage(id="m1", task="step", queue="default", args=[1], workflow=flow)
    async with broker, running_worker(broker) as worker:
        await broker.transport.publish("default", orjson.dumps(message.to_dict()))
        await worker.wait_idle()
        dead = await broker.admin.dead_letters("default")
    assert ran == []
    assert [d.reason for d in dead] == [
        "undecodable message: a task node's delay has the wrong type: 'soon'"
    ]


async def test_a_large_error_reaches_the_handle_when_its_callback_cannot_be_sent() -> None:
    broker = memory_broker(max_message_size=5000)

    @broker.task(name="boom")
    async def boom() -> int:
        raise ValueError("x" * 6000)

    @broker.task(name="alert")
    async def alert(failure: aq.Failure) -> None:
        return None

    async with broker, running_worker(broker):
        handle = await boom.options(link_error=alert.s()).kiq()
        with pytest.raises(aq.TaskFailed, match="xxxx"):
            await handle.result(timeout=10)


async def test_a_chain_ending_in_an_empty_group_waits_for_its_steps() -> None:
    broker = memory_broker()

    @broker.task(name="fail")
    async def fail() -> int:
        raise ValueError("step 1 failed")

    @broker.task(name="one")
    async def one() -> int:
        return 1

    async with broker, running_worker(broker):
        empty: aq.Group[Any, int] = aq.group()
        failing = await aq.chain(fail.s(), empty).kiq()
        with pytest.raises(aq.TaskFailed, match="step 1 failed"):
            await failing.result(timeout=10)
        fine = await aq.chain(one.s(), empty).kiq()
        assert await fine.result(timeout=10) == []
        body_only = await aq.chord(empty, aq.chain(one.si(), empty)).kiq()
        assert await body_only.result(timeout=10) == []


async def test_kiq_many_sends_nothing_when_a_unique_call_cannot_be_encoded() -> None:
    broker = memory_broker()

    @broker.task(name="send", unique_for=60)
    async def send(x: object) -> None:
        return None

    @broker.task(name="plain")
    async def plain(x: object) -> None:
        return None

    async with broker:
        with pytest.raises(aq.SerializationError, match="argument 'x'"):
            await send.kiq_many([send.s(1), send.s(object()), send.s(2)])
        assert (await broker.admin.stats("default")).ready == 0


def test_unique_and_async_generator_tasks_cannot_be_workflow_steps() -> None:
    broker = memory_broker()

    @broker.task(name="unique", unique_for=60)
    async def unique(x: int) -> int:
        return x

    @broker.task(name="items")
    async def items(n: int) -> Any:
        yield n

    with pytest.raises(aq.ConfigurationError, match="unique task"):
        aq.chain(unique.s(1), unique.s()).to_node("", False, False)
    with pytest.raises(aq.ConfigurationError, match="async-generator task"):
        aq.Signature(items, (1,), {}, False)

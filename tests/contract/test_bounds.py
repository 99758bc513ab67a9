"""A worker checks what it receives before parsing it: bodies written straight
into the broker, too large or nested too deep, are dead-lettered with the reason."""

from __future__ import annotations

from typing import Any

import pytest

import aq
from aq.serializer import JSONSerializer
from aq.testing import running_worker


async def test_an_oversized_body_is_dead_lettered_unparsed_and_work_goes_on(
    broker: aq.Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    @broker.task
    async def echo(x: int) -> int:
        return x

    decoded: list[int] = []
    loads = JSONSerializer.loads

    def watched(self: JSONSerializer, data: bytes) -> Any:
        decoded.append(len(data))  # every JSON body this process decodes
        return loads(self, data)

    monkeypatch.setattr(JSONSerializer, "loads", watched)
    body = b'{"v": 1, "pad": "' + b"x" * (2 * broker.max_message_size) + b'"}'
    await broker.transport.publish("default", body)
    async with running_worker(broker) as worker:
        assert await (await echo.kiq(7)).result(timeout=10) == 7
        await worker.wait_idle()
    [letter] = await broker.admin.dead_letters("default")
    assert letter.reason == (
        f"message of {len(body)} bytes is over max_message_size "
        f"({broker.max_message_size}); not decoded"
    )
    assert max(decoded) < broker.max_message_size  # the parser never saw it


async def test_a_deeply_nested_body_is_dead_lettered_and_work_goes_on(broker: aq.Broker) -> None:
    @broker.task
    async def echo(x: int) -> int:
        return x

    await broker.transport.publish("default", b"[" * 10_000 + b"]" * 10_000)
    async with running_worker(broker) as worker:
        assert await (await echo.kiq(7)).result(timeout=10) == 7
        await worker.wait_idle()
    [letter] = await broker.admin.dead_letters("default")
    assert letter.reason.startswith("undecodable message: ")
    assert "depth limit exceeded" in letter.reason


async def test_a_result_over_the_size_limit_fails_the_task_saying_so(broker: aq.Broker) -> None:
    @broker.task
    async def huge() -> str:
        return "x" * (broker.max_message_size + 1)

    async with running_worker(broker):
        with pytest.raises(aq.TaskFailed, match="over max_message_size") as caught:
            await (await huge.kiq()).result(timeout=10)
    assert caught.value.remote_type == "aq.errors.SerializationError"


async def test_an_error_over_the_size_limit_arrives_cut_to_fit(broker: aq.Broker) -> None:
    @broker.task
    async def loud() -> None:
        raise ValueError("x" * (broker.max_message_size + 1))

    async with running_worker(broker):
        with pytest.raises(aq.TaskFailed) as caught:
            await (await loud.kiq()).result(timeout=10)
    assert caught.value.remote_type == "ValueError"
    assert caught.value.remote_message.startswith("xxxx")
    assert caught.value.remote_message.endswith("... (cut to fit max_message_size)")


async def test_a_stored_result_copied_under_another_id_is_not_taken_for_its(
    stored_broker: aq.Broker,
) -> None:
    broker = stored_broker
    broker.result_ttl = 60

    @broker.task
    async def seven() -> int:
        return 7

    async with running_worker(broker):
        handle = await seven.kiq()
        assert await handle.result(timeout=10) == 7
    assert broker.store is not None
    kept = await broker.store.get(f"result:{handle.id}")
    assert kept is not None
    await broker.store.set("result:someone-else", kept, ttl=60)
    with pytest.raises(aq.ResultNotFound, match="another task's"):
        await broker.get_result("someone-else")
    assert await broker.get_result(handle.id) == 7

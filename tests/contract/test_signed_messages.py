"""Signed messages on every broker: a worker that requires signatures runs only
what a key it holds signed, for the queue it was sent to; a producer resolves
handles only from signed replies; keys rotate under traffic with nothing lost."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

import orjson
import pytest

import aq
from aq.envelope import Codec
from aq.message import Reply, TaskMessage, encode_reply, new_id
from aq.serializer import JSONSerializer
from aq.signing import Keyring
from aq.testing import running_worker

OLD = "old-secret-of-at-least-thirty-two-bytes-000"
NEW = "new-secret-of-at-least-thirty-two-bytes-111"
KEYS = {"2026-06": OLD}

Make = Callable[..., aq.Broker]


@pytest.fixture
def signed(twin_of: Make) -> Make:
    """Makes brokers on the test broker's server that sign with the keys given."""

    def make(keys: Mapping[str, str] = KEYS, sign_with: str | None = None) -> aq.Broker:
        return twin_of(signing_keys=keys, sign_with=sign_with)

    return make


def _counting(broker: aq.Broker, calls: list[Any]) -> aq.Task[[int], int]:
    @broker.task(name="double")
    async def double(x: int) -> int:
        calls.append(x)
        return 2 * x

    return double


def _message(x: int, queue: str = "default", task: str = "double") -> dict[str, Any]:
    return TaskMessage(new_id(), task, queue, args=[x]).to_dict()


async def _refused(worker_broker: aq.Broker, body: bytes, queue: str = "default") -> str:
    """Publish ``body`` to ``queue`` where a signing worker runs; after a good task
    has run there, the one dead letter's reason. No call but the good one ran."""
    calls: list[Any] = []
    double = _counting(worker_broker, calls)
    async with worker_broker:
        await worker_broker.transport.publish(queue, body)
        async with running_worker(worker_broker, queues=["default", "other"]) as worker:
            assert await (await double.kiq(21)).result(timeout=10) == 42
            await worker.wait_idle()
        assert calls == [21]
        [letter] = await worker_broker.admin.dead_letters(queue)
        assert letter.body == body  # kept whole, for inspection
        return letter.reason


async def test_a_tampered_byte_is_dead_lettered_and_never_run(signed: Make) -> None:
    worker_broker = signed()
    body = bytearray(worker_broker.codec.dumps(_message(5)))
    body[body.index(b'"args":[5]') + 8] = ord("6")  # [5] -> [6]
    reason = await _refused(worker_broker, bytes(body))
    assert reason == "untrusted message: bad signature (key id '2026-06'): the message was altered"


async def test_a_swapped_task_name_is_dead_lettered_and_never_run(signed: Make) -> None:
    worker_broker = signed()
    genuine = worker_broker.codec.dumps(_message(5, task="other"))
    swapped = genuine.replace(b'"task":"other"', b'"task":"double"')
    assert len(swapped) == len(genuine) + 1
    reason = await _refused(worker_broker, swapped)
    assert reason.startswith("untrusted message: bad signature")


async def test_a_message_signed_for_one_queue_and_sent_to_another_is_refused(
    signed: Make,
) -> None:
    worker_broker = signed()
    body = worker_broker.codec.dumps(_message(5, queue="default"))
    reason = await _refused(worker_broker, body, queue="other")
    assert reason == "untrusted message: signed for queue 'default', delivered from 'other'"


async def test_an_unknown_key_id_is_dead_lettered_and_never_run(signed: Make) -> None:
    worker_broker = signed()
    stranger = Codec(JSONSerializer(), keyring=Keyring({"2099-01": NEW}))
    reason = await _refused(worker_broker, stranger.dumps(_message(5)))
    assert reason == (
        "untrusted message: signed with key id '2099-01', which this process does not "
        "have (it accepts 2026-06)"
    )


async def test_an_unsigned_message_is_dead_lettered_and_never_run(signed: Make) -> None:
    worker_broker = signed()
    reason = await _refused(worker_broker, orjson.dumps(_message(5)))
    assert reason == "untrusted message: unsigned, and this process requires signed messages"


async def test_a_worker_not_requiring_signatures_runs_unsigned_and_signed_messages(
    twin_of: Make,
) -> None:
    lenient = twin_of(signing_keys=KEYS, require_signatures=False)
    calls: list[Any] = []
    double = _counting(lenient, calls)
    plain = twin_of()
    unsigned = plain.task(name="double")(double.fn)
    async with lenient, plain, running_worker(lenient):
        assert await (await double.kiq(1)).result(timeout=10) == 2
        assert await (await unsigned.kiq(2)).result(timeout=10) == 4
    assert sorted(calls) == [1, 2]


async def test_a_forged_reply_is_dropped_and_the_genuine_one_resolves_the_handle(
    signed: Make, caplog: pytest.LogCaptureFixture
) -> None:
    producer = signed()
    calls: list[Any] = []
    double = _counting(producer, calls)
    caplog.set_level(logging.WARNING, logger="aq")
    async with producer:
        handle = await double.kiq(5)  # no worker: the test answers it
        address = producer.listening_address
        assert address is not None
        forger = Codec(JSONSerializer(), keyring=Keyring({"2026-06": NEW}))  # right id, wrong key
        for codec, value in ((forger, 666), (JSONSerializer(), 667), (producer.codec, 10)):
            reply = Reply(handle.id, handle.id, "result", value)
            await producer.transport.send_reply(address, encode_reply(reply, codec))
        assert await handle.result(timeout=10) == 10
    dropped = [r.getMessage() for r in caplog.records if "reply" in r.getMessage()]
    assert len(dropped) == 2
    assert "bad signature" in dropped[0]
    assert "unsigned" in dropped[1]


async def test_keys_rotate_under_traffic_with_nothing_lost(signed: Make) -> None:
    """The three steps of docs/security.md, each rolled out while tasks flow:
    add the new key everywhere, sign with it, retire the old one."""
    calls: list[Any] = []
    both = {"2026-06": OLD, "2026-12": NEW}
    steps = [
        signed({"2026-06": OLD}),  # where it starts
        signed(both, sign_with="2026-06"),  # 1: every process learns the new key
        signed(both, sign_with="2026-12"),  # 2: every process signs with it
        signed({"2026-12": NEW}),  # 3: the old key is retired
    ]
    tasks = [_counting(b, calls) for b in steps]
    sent = 0
    for index, (broker_now, task_now) in enumerate(zip(steps, tasks, strict=True)):
        async with broker_now:
            # The previous step's worker still runs while this step's starts: a rolling update.
            previous = steps[index - 1] if index else None
            async with running_worker(broker_now):
                handles = [await task_now.kiq(sent + i) for i in range(50)]
                if previous is not None:
                    async with running_worker(previous):
                        handles += [await task_now.kiq(sent + 50 + i) for i in range(50)]
                results = await asyncio.gather(*(h.result(timeout=20) for h in handles))
        assert results == [2 * (sent + i) for i in range(len(handles))]
        sent += len(handles)
    assert sorted(calls) == list(range(sent))
    for broker_now in steps:
        async with broker_now:
            assert await broker_now.admin.dead_letters("default") == []


async def test_forged_control_messages_are_ignored_and_signed_ones_obeyed(
    broker: aq.Broker, signed: Make, caplog: pytest.LogCaptureFixture
) -> None:
    worker_broker = signed()
    started = asyncio.Event()

    @worker_broker.task(name="forever")
    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    caplog.set_level(logging.WARNING, logger="aq.worker")
    async with worker_broker, broker, running_worker(worker_broker):
        handle = await forever.kiq()
        await started.wait()
        await broker.cancel(handle.id)  # unsigned: ignored
        await worker_broker.cancel(handle.id)  # signed: obeyed
        with pytest.raises(aq.TaskCancelled):
            await handle.result(timeout=10)
    ignored = [r.getMessage() for r in caplog.records if "control.ignored" in r.getMessage()]
    assert len(ignored) == 1
    assert "unsigned" in ignored[0]


async def test_forged_event_batches_are_skipped(broker: aq.Broker, signed: Make) -> None:
    watcher = signed()
    genuine = signed()
    async with watcher, genuine, broker, watcher.subscribe_events() as events:
        emitter = broker.enable_events()  # unsigned
        emitter.emit("task-sent", {"task_id": "forged"})
        await emitter.flush()
        signed_emitter = genuine.enable_events()
        signed_emitter.emit("task-sent", {"task_id": "genuine"})
        await signed_emitter.flush()
        event = await asyncio.wait_for(events.next(), 10)
        assert event.fields["task_id"] == "genuine"
        assert events.skipped == 1


async def test_a_signed_message_moved_to_the_isolation_queue_still_runs_there(
    signed: Make,
) -> None:
    worker_broker = signed()
    calls: list[Any] = []
    double = _counting(worker_broker, calls)
    async with worker_broker:
        handle = await double.kiq(4)
        consumer = await worker_broker.transport.consume(["default"], 1)
        try:
            await (await consumer.get()).isolate()  # as after its workers died twice
        finally:
            await consumer.close()
        async with running_worker(worker_broker, crashes="isolated"):
            assert await handle.result(timeout=10) == 8
    assert calls == [4]

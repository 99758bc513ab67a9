"""The parts behind monitoring, each on its own: the emitter's bounds, a slow
watcher's backlog, aq top's figures, and a lone worker's metrics port."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

import aq
from aq.errors import ConnectionLost
from aq.monitor.emitter import EventEmitter
from aq.monitor.metrics import dead_letter_reason
from aq.monitor.top import TopState
from aq.monitor.wire import Event, decode_events, encode_events
from aq.serializer import JSONSerializer
from aq.testing import running_worker
from aq.transport.base import EVENT_BACKLOG
from aq.transport.memory import MemoryTransport
from aq.worker.options import WorkerOptions
from aq.worker.runner import _metrics_socket, _serve_metrics

CODEC = JSONSerializer()


class _Unreachable(MemoryTransport):
    """A memory transport whose event channel is down until ``up`` is set."""

    def __init__(self) -> None:
        super().__init__("memory://unreachable")
        self.up = asyncio.Event()
        self.batches: list[bytes] = []

    async def publish_events(self, body: bytes) -> None:
        if not self.up.is_set():
            raise ConnectionLost("down")
        self.batches.append(body)


async def test_an_emitter_that_cannot_send_keeps_only_the_newest_events() -> None:
    transport = _Unreachable()
    emitter = EventEmitter(transport, CODEC, max_buffer=10, max_batch=4)
    emitter.start()
    for n in range(25):
        emitter.emit("task-sent", {"n": n})
    await asyncio.sleep(0)  # the send loop tries, fails, and waits to try again
    assert emitter.dropped == 15
    transport.up.set()
    await emitter.flush(timeout=5)
    await emitter.close()
    sent = [e.get("n") for body in transport.batches for e in decode_events(body, CODEC)]
    assert sent == list(range(15, 25))


async def test_a_watcher_that_does_not_read_keeps_only_the_newest_batches() -> None:
    broker = aq.Broker("memory://backlog")
    async with broker, broker.subscribe_events() as stream:
        for n in range(EVENT_BACKLOG + 5):
            await broker.transport.publish_events(
                encode_events([{"type": "task-sent", "ts": 1.0, "n": n}], CODEC)
            )
        first = await stream.next()
    assert first.get("n") == 5


def test_a_batch_keeps_the_good_events_and_skips_the_bad() -> None:
    items: list[Any] = [
        {"type": "task-sent", "ts": 1.5, "task_id": "a"},
        {"type": "no-such-type", "ts": 1.0},
        {"type": "task-sent", "ts": "yesterday"},
        "not an object",
    ]
    body = encode_events(items, CODEC)
    assert [e.task_id for e in decode_events(body, CODEC)] == ["a"]
    with pytest.raises(aq.MessageDecodeError, match="not a v1 event batch"):
        decode_events(b'{"v": 2, "events": []}', CODEC)


def test_dead_letter_reasons_become_few_label_values() -> None:
    assert dead_letter_reason("undecodable message: bad json") == "undecodable"
    assert dead_letter_reason("unknown task: 'x'") == "unknown_task"
    assert dead_letter_reason("failed after 3 attempt(s): ValueError: x") == "failed"
    assert dead_letter_reason("expired before it ran") == "expired"
    assert dead_letter_reason("something new") == "other"


def _event(kind: str, ts: float, **fields: object) -> Event:
    return Event(kind, ts, {"type": kind, "ts": ts, **fields})


def test_top_counts_outcomes_and_runtime_percentiles_per_task() -> None:
    state = TopState("redis://localhost")
    now = time.time()
    state.feed(_event("worker-heartbeat", now, worker="h.1", host="h", active=2, processed=7), now)
    for i in range(1, 101):
        common = {"worker": "h.1", "name": "app.work", "queue": "default", "task_id": str(i)}
        state.feed(_event("task-received", now, **common), now)
        state.feed(_event("task-succeeded", now, runtime=i / 1000, **common), now)
    state.feed(_event("task-failed", now, worker="h.1", name="app.bad", runtime=0.5), now)
    console = Console(record=True, width=120)
    console.print(state.render(now))
    text = console.export_text()
    assert "h.1" in text
    assert "online" in text
    [row] = [line for line in text.splitlines() if "app.work" in line]
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    assert cells == ["app.work", "100", "0", "0", "50.0ms", "95.0ms"]
    assert "failed 1" in text
    assert "tasks/s 10.1" in text  # 101 ends over the last 10 seconds


def test_top_shows_a_worker_lost_after_three_missed_heartbeats() -> None:
    state = TopState("memory://")
    state.feed(_event("worker-heartbeat", 0.0, worker="h.1", freq=2.0), now=0.0)
    console = Console(record=True, width=120)
    console.print(state.render(now=8.0))
    assert "lost" in console.export_text()


async def test_a_lone_workers_metrics_port_serves_its_metrics_and_health() -> None:
    broker = aq.Broker("memory://metrics")

    @broker.task
    async def double(x: int) -> int:
        return 2 * x

    options = WorkerOptions(metrics_port=0, metrics_host="127.0.0.1")
    sock = _metrics_socket(options)
    assert sock is not None
    async with broker:
        worker = aq.Worker(broker, options=options)
        server = _serve_metrics(worker, sock)
        await server.start()
        await worker.start()
        try:
            assert await (await double.kiq(21)).result(timeout=5) == 42
            await _healthy(server.port)
            text = await asyncio.to_thread(_get, server.port, "/metrics")
            missing = await asyncio.to_thread(_status, server.port, "/nothing")
        finally:
            await worker.stop()
            await server.close()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    labels = (("outcome", "succeeded"), ("queue", "default"), ("task", double.name))
    assert samples[("aq_tasks_total", labels)] == 1
    assert samples[("aq_worker_concurrency_slots", ())] == worker.concurrency
    assert samples[("aq_queue_messages", (("queue", "default"), ("state", "ready")))] == 0
    assert missing == 404


def _get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        body: bytes = response.read()
        return body.decode()


def _status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


async def _healthy(port: int) -> None:
    """Wait for the first health check (it runs once a second)."""
    async with asyncio.timeout(10):
        while await asyncio.to_thread(_status, port, "/healthz") != 200:  # noqa: ASYNC110
            await asyncio.sleep(0.1)


async def test_an_expired_command_is_not_obeyed(broker_memory: aq.Broker) -> None:
    from aq.message import ControlMessage, encode_control

    async with running_worker(broker_memory) as worker:
        old = ControlMessage("shutdown", "", expires=time.time() - 1)
        await broker_memory.transport.broadcast(encode_control(old, broker_memory.serializer))
        answers = await broker_memory.inspect.ping(worker=worker.id, timeout=5)
        assert list(answers) == [worker.id]  # answered after the shutdown, which it ignored
        assert not worker.shutdown_requested


@pytest.fixture
async def broker_memory() -> AsyncIterator[aq.Broker]:
    broker = aq.Broker("memory://expired-commands")
    async with broker:
        yield broker


class _Slow(MemoryTransport):
    """A memory transport whose event sends take ``delay`` seconds, or fail."""

    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        super().__init__("memory://slow")
        self.delay, self.fail = delay, fail
        self.batches: list[bytes] = []
        self.sending = asyncio.Event()

    async def publish_events(self, body: bytes) -> None:
        self.sending.set()
        await asyncio.sleep(self.delay)
        if self.fail:
            raise ValueError("this batch never goes")
        self.batches.append(body)


async def test_flush_waits_for_the_batch_being_sent() -> None:
    transport = _Slow(delay=0.2)
    emitter = EventEmitter(transport, CODEC, interval=0.01)
    emitter.start()
    emitter.emit("task-sent", {"n": 1})
    await transport.sending.wait()  # the batch is on its way, the buffer empty
    await emitter.flush(timeout=5)
    assert emitter.sent == 1
    await emitter.close()


async def test_an_emitter_closed_and_started_again_still_sends() -> None:
    transport = _Slow()
    emitter = EventEmitter(transport, CODEC, interval=0.01)
    for _ in range(2):
        emitter.start()
        emitter.emit("task-sent", {"n": 1})
        await emitter.close()
    emitter.start()
    emitter.emit("task-sent", {"n": 2})
    await emitter.flush(timeout=5)
    assert emitter.sent == 3
    await emitter.close()


async def test_a_batch_that_never_goes_is_dropped_after_ten_tries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(asyncio, "sleep", _no_wait)  # the loop's pause between tries
    transport = _Slow(fail=True)
    emitter = EventEmitter(transport, CODEC, interval=0.01)
    emitter.start()
    emitter.emit("task-sent", {"n": 1})
    await emitter.flush(timeout=5)
    assert (emitter.sent, emitter.dropped) == (0, 1)
    await emitter.close()


_real_sleep = asyncio.sleep


async def _no_wait(seconds: float) -> None:
    await _real_sleep(0)


async def test_a_broker_made_with_events_on_emits_task_sent() -> None:
    broker = aq.Broker("memory://events-on", events=True)

    @broker.task
    async def noop() -> None: ...

    async with broker, broker.subscribe_events() as stream:
        handle = await noop.kiq()
        sent = await stream.next()
    assert (sent.type, sent.task_id) == ("task-sent", handle.id)


def test_top_state_tells_apart_a_bounded_number_of_names_queues_and_workers() -> None:
    from aq.monitor import top

    state = top.TopState("t")
    now = 1000.0
    for n in range(top.MAX_NAMES + 50):
        state.feed(
            Event(
                "task-succeeded",
                now,
                {"type": "task-succeeded", "ts": now, "task_id": f"t{n}", "name": f"n{n}"}
                | {"queue": f"q{n}", "worker": f"w{n}" + "x" * 300, "runtime": 0.1},
            ),
            now,
        )
    assert len(state.tasks) == top.MAX_NAMES + 1  # the rest under one name
    assert state.tasks[top.OTHERS].succeeded == 50
    assert len(state.seen_queues()) == top.MAX_QUEUES
    assert all(len(worker_id) <= 200 for worker_id in state.workers)
    state.prune(now + 20)  # quiet queues leave no empty rate behind
    snapshot = state.snapshot(now + 20)
    assert all(q["taken_rate"] == 0 and q["done_rate"] == 0 for q in snapshot["queues"])
    state.prune(now + 2 * 3600)
    assert state.seen_queues() == []

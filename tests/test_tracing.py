"""OpenTelemetry tracing (aq.tracing): the spans of sending and running tasks,
and the trace context that joins them, in one process on the memory broker and
across processes on Redis.

Spans go to the SDK's InMemorySpanExporter through a TracerProvider of each
test's own, given to the middleware: the global provider is never set.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import uuid
import weakref
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from redis.asyncio import Redis

import aq
from aq.testing import running_worker
from aq.tracing import TracingMiddleware
from tests.conftest import REDIS_URL, broker_url

ROOT = Path(__file__).resolve().parent.parent
#: A Redis database of the tracing test's own (flushed before and after it).
TRACE_REDIS_URL = f"{REDIS_URL.rsplit('/', 1)[0]}/11"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


@pytest.fixture
def tracing(provider: TracerProvider) -> TracingMiddleware:
    return TracingMiddleware(provider)


@pytest.fixture
async def broker(tracing: TracingMiddleware) -> AsyncIterator[aq.Broker]:
    b = aq.Broker(broker_url("memory"), middleware=[tracing])
    async with b:
        yield b


def one(spans: Sequence[ReadableSpan], name: str, task: str) -> ReadableSpan:
    """The one span called ``name`` about task ``task``."""
    found = [
        s for s in spans if s.name == name and (s.attributes or {}).get("aq.task.name") == task
    ]
    assert len(found) == 1, [(s.name, s.attributes) for s in spans]
    return found[0]


def ids(span: ReadableSpan) -> tuple[int, int]:
    """``(trace_id, span_id)`` of ``span``."""
    assert span.context is not None
    return span.context.trace_id, span.context.span_id


def parent_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def traceparent(span: ReadableSpan) -> str:
    """The W3C ``traceparent`` header that names ``span``."""
    assert span.context is not None
    trace_id, span_id = ids(span)
    return f"00-{trace_id:032x}-{span_id:016x}-{span.context.trace_flags:02x}"


def messaging(
    operation: str, queue: str, message_id: str, task: str, attempt: int = 1
) -> dict[str, Any]:
    return {
        "messaging.system": "aq",
        "messaging.operation.type": operation,
        "messaging.operation.name": operation,
        "messaging.destination.name": queue,
        "messaging.message.id": message_id,
        "aq.task.name": task,
        "aq.task.attempt": attempt,
    }


# -- in one process, on the memory broker ------------------------------------------------


async def test_a_task_makes_a_send_span_and_a_process_span_under_it(
    broker: aq.Broker, exporter: InMemorySpanExporter, tracing: TracingMiddleware
) -> None:
    seen: list[dict[str, Any]] = []

    @broker.task(name="tracing.add")
    async def add(a: int, b: int) -> int:
        seen.append(dict(aq.context().headers))
        return a + b

    async with running_worker(broker):
        handle = await add.kiq(1, 2)
        assert await handle.result(timeout=10) == 3
    spans = exporter.get_finished_spans()
    assert len(spans) == 2
    send = one(spans, "send default", "tracing.add")
    process = one(spans, "process default", "tracing.add")
    assert send.kind is SpanKind.PRODUCER
    assert process.kind is SpanKind.CONSUMER
    assert dict(send.attributes or {}) == messaging("send", "default", handle.id, "tracing.add")
    assert dict(process.attributes or {}) == messaging(
        "process", "default", handle.id, "tracing.add"
    ) | {"aq.task.outcome": "success"}
    assert parent_id(send) is None  # nothing was current at kiq()
    assert ids(process)[0] == ids(send)[0]
    assert parent_id(process) == ids(send)[1]
    assert process.parent is not None
    assert process.parent.is_remote  # read from the headers
    assert send.status.status_code is StatusCode.UNSET
    assert process.status.status_code is StatusCode.UNSET
    assert seen[0]["traceparent"] == traceparent(send)
    assert tracing.open_sends == 0


async def test_the_span_current_at_kiq_is_the_send_span_s_parent(
    broker: aq.Broker, exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    @broker.task(name="tracing.noop")
    async def noop() -> None:
        return None

    async with running_worker(broker):
        with provider.get_tracer("test").start_as_current_span("GET /noop") as request:
            handle = await noop.kiq()
        await handle.result(timeout=10)
    send = one(exporter.get_finished_spans(), "send default", "tracing.noop")
    assert parent_id(send) == request.get_span_context().span_id
    assert ids(send)[0] == request.get_span_context().trace_id


async def test_a_task_that_sends_another_makes_one_trace_of_four_spans(
    broker: aq.Broker, exporter: InMemorySpanExporter
) -> None:
    @broker.task(name="tracing.inner", queue="inner")
    async def inner(x: int) -> int:
        return x * 2

    @broker.task(name="tracing.outer")
    async def outer(x: int) -> str:
        sent = await inner.kiq(x)  # while outer's process span is current
        return sent.id

    async with running_worker(broker) as worker:
        handle = await outer.kiq(21)
        inner_id = await handle.result(timeout=10)
        await worker.wait_idle()
    spans = exporter.get_finished_spans()
    assert len(spans) == 4
    send_outer = one(spans, "send default", "tracing.outer")
    process_outer = one(spans, "process default", "tracing.outer")
    send_inner = one(spans, "send inner", "tracing.inner")
    process_inner = one(spans, "process inner", "tracing.inner")
    assert {ids(s)[0] for s in spans} == {ids(send_outer)[0]}
    assert parent_id(send_outer) is None
    assert parent_id(process_outer) == ids(send_outer)[1]
    assert parent_id(send_inner) == ids(process_outer)[1]
    assert parent_id(process_inner) == ids(send_inner)[1]
    assert (send_inner.attributes or {})["messaging.message.id"] == inner_id
    assert (process_inner.attributes or {})["messaging.destination.name"] == "inner"


async def test_a_failing_task_s_process_span_has_error_status_and_the_exception(
    broker: aq.Broker, exporter: InMemorySpanExporter
) -> None:
    @broker.task(name="tracing.fail")
    async def fail() -> None:
        raise ValueError("no such thing")

    async with running_worker(broker):
        handle = await fail.kiq()
        with pytest.raises(aq.TaskFailed):
            await handle.result(timeout=10)
    spans = exporter.get_finished_spans()
    send = one(spans, "send default", "tracing.fail")
    process = one(spans, "process default", "tracing.fail")
    assert send.status.status_code is StatusCode.UNSET  # the send went well
    assert process.status.status_code is StatusCode.ERROR
    assert process.status.description == "ValueError: no such thing"
    attributes = process.attributes or {}
    assert attributes["aq.task.outcome"] == "failure"
    assert attributes["error.type"] == "ValueError"
    [event] = process.events
    assert event.name == "exception"
    assert (event.attributes or {})["exception.type"] == "ValueError"
    assert (event.attributes or {})["exception.message"] == "no such thing"
    assert parent_id(process) == ids(send)[1]


async def test_every_attempt_of_a_retried_task_is_a_child_of_its_send_span(
    broker: aq.Broker, exporter: InMemorySpanExporter
) -> None:
    @broker.task(name="tracing.flaky", retries=1)
    async def flaky() -> str:
        if aq.context().attempt == 1:
            raise aq.Retry(delay=0, reason="not yet")
        return "done"

    async with running_worker(broker):
        handle = await flaky.kiq()
        assert await handle.result(timeout=10) == "done"
    spans = exporter.get_finished_spans()
    send = one(spans, "send default", "tracing.flaky")
    attempts = sorted(
        (s for s in spans if s.name == "process default"),
        key=lambda s: int((s.attributes or {})["aq.task.attempt"]),  # type: ignore[arg-type]
    )
    assert len(attempts) == 2
    first, second = attempts
    assert [parent_id(first), parent_id(second)] == [ids(send)[1], ids(send)[1]]
    assert (first.attributes or {})["aq.task.outcome"] == "retry"
    assert first.status.status_code is StatusCode.ERROR
    assert (first.attributes or {})["error.type"] == "aq.errors.Retry"
    assert (second.attributes or {})["aq.task.outcome"] == "success"
    assert (second.attributes or {})["aq.task.attempt"] == 2
    assert second.status.status_code is StatusCode.UNSET


async def test_a_cancelled_task_s_process_span_says_so(
    broker: aq.Broker, exporter: InMemorySpanExporter
) -> None:
    started = asyncio.Event()

    @broker.task(name="tracing.wait")
    async def wait() -> None:
        started.set()
        await asyncio.Event().wait()  # until cancelled

    async with running_worker(broker):
        handle = await wait.kiq()
        await started.wait()
        await broker.cancel(handle.id)
        with pytest.raises(aq.TaskCancelled):
            await handle.result(timeout=10)
    process = one(exporter.get_finished_spans(), "process default", "tracing.wait")
    assert (process.attributes or {})["aq.task.outcome"] == "cancelled"
    assert process.status.status_code is StatusCode.ERROR
    assert [e.name for e in process.events] == ["exception"]


async def test_a_task_interrupted_by_a_worker_shutdown_leaves_nothing_behind(
    broker: aq.Broker, exporter: InMemorySpanExporter, tracing: TracingMiddleware
) -> None:
    started = asyncio.Event()
    current: list[weakref.ref[trace.Span]] = []

    @broker.task(name="tracing.long")
    async def long() -> str:
        span = trace.get_current_span()  # its process span
        assert span.is_recording()
        current.append(weakref.ref(span))
        del span
        started.set()
        if len(current) == 1:
            await asyncio.Event().wait()  # until the worker stops
        return "done"

    async with running_worker(broker, shutdown_timeout=0):  # cancels what runs when it stops
        handle = await long.kiq()
        await started.wait()
    # No after_execute came: the span was never ended, and nothing holds it.
    assert [s.name for s in exporter.get_finished_spans()] == ["send default"]
    gc.collect()
    assert current[0]() is None
    async with running_worker(broker):  # the message went back to the queue: it runs again
        assert await handle.result(timeout=10) == "done"
    spans = exporter.get_finished_spans()
    process = one(spans, "process default", "tracing.long")
    assert parent_id(process) == ids(one(spans, "send default", "tracing.long"))[1]
    assert tracing.open_sends == 0


async def test_the_next_steps_of_a_workflow_join_the_trace(
    broker: aq.Broker, exporter: InMemorySpanExporter
) -> None:
    @broker.task(name="tracing.double")
    async def double(x: int) -> int:
        return x * 2

    @broker.task(name="tracing.plus_one")
    async def plus_one(x: int) -> int:
        return x + 1

    async with running_worker(broker) as worker:
        handle = await aq.chain(double.s(5), plus_one.s()).kiq()
        assert await handle.result(timeout=10) == 11
        await worker.wait_idle()
    spans = exporter.get_finished_spans()
    assert len(spans) == 4
    first = one(spans, "process default", "tracing.double")
    then = one(spans, "send default", "tracing.plus_one")  # sent as the first step settled
    assert {ids(s)[0] for s in spans} == {ids(first)[0]}
    assert parent_id(then) == ids(first)[1]
    assert parent_id(one(spans, "process default", "tracing.plus_one")) == ids(then)[1]


async def test_trace_headers_copied_from_another_message_are_replaced(
    broker: aq.Broker, exporter: InMemorySpanExporter
) -> None:
    seen: list[dict[str, Any]] = []

    @broker.task(name="tracing.copy")
    async def copy() -> None:
        seen.append(dict(aq.context().headers))

    stale = {
        "traceparent": f"00-{'1' * 32}-{'2' * 16}-01",
        "tracestate": "vendor=stale",
        "note": "kept",
    }
    async with running_worker(broker):
        await (await copy.options(headers=stale).kiq()).result(timeout=10)
    spans = exporter.get_finished_spans()
    send = one(spans, "send default", "tracing.copy")
    assert parent_id(send) is None
    assert seen == [{"traceparent": traceparent(send), "note": "kept"}]
    assert parent_id(one(spans, "process default", "tracing.copy")) == ids(send)[1]


async def test_the_send_span_of_a_failed_publish_is_ended_by_a_later_send(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    tracing = TracingMiddleware(provider, abandon_after=0)
    broker = aq.Broker(broker_url("memory"), middleware=[tracing])

    @broker.task(name="tracing.take")
    async def take(value: object) -> None:
        return None

    async with broker:
        with pytest.raises(aq.SerializationError):  # raised after before_publish
            await take.kiq(object())
        assert tracing.open_sends == 1  # no after_publish came
        assert exporter.get_finished_spans() == ()
        await take.kiq(1)  # its before_publish gives up on the first
    assert tracing.open_sends == 0
    abandoned, sent = exporter.get_finished_spans()
    assert sent.status.status_code is StatusCode.UNSET
    assert abandoned.status.status_code is StatusCode.ERROR
    assert (abandoned.status.description or "").startswith("the publish did not complete")
    assert abandoned.end_time == abandoned.start_time  # its real end is unknown


async def test_open_send_spans_are_bounded(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    tracing = TracingMiddleware(provider, max_open_sends=3)
    broker = aq.Broker(broker_url("memory"), middleware=[tracing])

    @broker.task(name="tracing.take")
    async def take(value: object) -> None:
        return None

    async with broker:
        for _ in range(5):
            with pytest.raises(aq.SerializationError):
                await take.kiq(object())
    assert tracing.open_sends == 3
    assert len(exporter.get_finished_spans()) == 2
    assert all(s.status.status_code is StatusCode.ERROR for s in exporter.get_finished_spans())


def test_a_missing_opentelemetry_is_reported_with_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # as if not installed
    with pytest.raises(aq.ConfigurationError, match=r"pip install 'aq-tasks\[otel\]'"):
        TracingMiddleware()


def test_importing_aq_tracing_does_not_import_opentelemetry() -> None:
    code = "import sys, aq.tracing; print(any(m.startswith('opentelemetry') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_middleware_checks_its_arguments() -> None:
    with pytest.raises(aq.ConfigurationError, match="abandon_after"):
        TracingMiddleware(abandon_after=-1)
    with pytest.raises(aq.ConfigurationError, match="max_open_sends"):
        TracingMiddleware(max_open_sends=0)


# -- across processes, on Redis ----------------------------------------------------------


@pytest.fixture
async def trace_db() -> AsyncIterator[str]:
    """A broker URL in the Redis database of this test, flushed before and after."""
    async with Redis.from_url(TRACE_REDIS_URL) as client:
        await client.flushdb()
    yield f"{TRACE_REDIS_URL}?prefix=aqtest-{uuid.uuid4().hex[:12]}"
    async with Redis.from_url(TRACE_REDIS_URL) as client:
        await client.flushdb()


@pytest.mark.slow
async def test_the_trace_goes_from_the_producer_through_a_worker_process_and_back(
    trace_db: str,
    tmp_path: Path,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    tracing: TracingMiddleware,
) -> None:
    producer = aq.Broker(trace_db, middleware=[tracing])

    @producer.task(name="traced.fetch")  # the producer's view of tests/apps/traced.py
    async def fetch(n: int) -> str:
        raise NotImplementedError("runs in the worker process")

    spans_file = tmp_path / "spans.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AQ_", "OTEL_"))}
    env |= {"AQ_BROKER_URL": trace_db, "AQ_TEST_TASKS": "2", "AQ_TEST_SPANS": str(spans_file)}
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.apps.traced",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with producer:
            tracer = provider.get_tracer("test")
            with tracer.start_as_current_span("GET /fetch", kind=SpanKind.SERVER) as request:
                handle = await fetch.kiq(7)
            stored_id = await handle.result(timeout=30)
        async with asyncio.timeout(30):  # it stops by itself after its two tasks
            _, stderr = await worker.communicate()
        assert worker.returncode == 0, stderr.decode(errors="replace")
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()

    trace_id = f"{request.get_span_context().trace_id:032x}"
    send = one(exporter.get_finished_spans(), "send default", "traced.fetch")
    assert parent_id(send) == request.get_span_context().span_id
    spans: list[dict[str, Any]] = json.loads(spans_file.read_text())

    def worker_span(name: str, task: str) -> dict[str, Any]:
        [span] = [s for s in spans if s["name"] == name and s["attributes"]["aq.task.name"] == task]
        return span

    process = worker_span("process default", "traced.fetch")
    assert process["trace_id"] == trace_id
    assert process["parent_id"] == f"{ids(send)[1]:016x}"
    assert process["kind"] == "CONSUMER"
    assert process["attributes"]["messaging.message.id"] == handle.id
    assert process["attributes"]["aq.task.outcome"] == "success"
    # What the task sent from the worker is in the same trace, under its span.
    send_store = worker_span("send default", "traced.store")
    process_store = worker_span("process default", "traced.store")
    assert send_store["kind"] == "PRODUCER"
    assert [send_store["trace_id"], process_store["trace_id"]] == [trace_id, trace_id]
    assert send_store["parent_id"] == process["span_id"]
    assert process_store["parent_id"] == send_store["span_id"]
    assert process_store["attributes"]["messaging.message.id"] == stored_id
    assert len(spans) == 3

"""A traced worker for tests/test_tracing.py: ``python -m tests.apps.traced``.

It serves the broker ``AQ_BROKER_URL`` names with a :class:`TracingMiddleware`
whose spans go to an in-memory exporter, stops by itself once it has started
``AQ_TEST_TASKS`` tasks (and finished them), and then writes the spans it
ended to the JSON file ``AQ_TEST_SPANS``: a list of objects with ``name``,
``trace_id`` (32 hex digits), ``span_id`` and ``parent_id`` (16 hex digits, or
null), ``kind`` (``CONSUMER``...), ``status`` (``UNSET``, ``ERROR``) and
``attributes``.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import aq
from aq.tracing import TracingMiddleware

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))

broker = aq.Broker(middleware=[TracingMiddleware(provider)])


@broker.task(name="traced.fetch")
async def fetch(n: int) -> str:
    """Send ``store(n)`` from the worker; return its task id."""
    handle = await store.kiq(n)
    return handle.id


@broker.task(name="traced.store")
async def store(n: int) -> int:
    """Return ``n``."""
    return n


def as_json(span: ReadableSpan) -> dict[str, Any]:
    context, parent = span.context, span.parent
    assert context is not None
    return {
        "name": span.name,
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_id": None if parent is None else f"{parent.span_id:016x}",
        "kind": span.kind.name,
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
    }


async def main() -> None:
    count = int(os.environ["AQ_TEST_TASKS"])
    async with broker:
        worker = aq.Worker(broker, max_tasks=count)
        await worker.start()
        await worker.wait_stopped()  # it stops itself, once the tasks it started are done
    provider.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
    spans = [as_json(span) for span in exporter.get_finished_spans()]
    Path(os.environ["AQ_TEST_SPANS"]).write_text(json.dumps(spans))

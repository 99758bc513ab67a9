"""OpenTelemetry tracing: :class:`TracingMiddleware` (the ``aq-tasks[otel]`` extra).

This module owns aq's spans and the trace context its task messages carry. On
the producer, each message sent gets a ``send <queue>`` span (kind PRODUCER), a
child of whatever span is current at ``kiq()``, and the W3C trace context of
that span (``traceparent``, ``tracestate``, and ``baggage`` with the default
propagators) goes into the message headers through the global propagator. In
the worker, each attempt gets a ``process <queue>`` span (kind CONSUMER) whose
parent is taken from those headers, and which is the current span while the
task runs, so that what the task sends, and whatever other instrumented
libraries it calls, joins the same trace.

Attributes follow the OpenTelemetry messaging conventions: ``messaging.system``
is ``"aq"`` (the spans describe aq's own operations, whichever broker carries
them; the client libraries of Redis and RabbitMQ report theirs under their own
names), with ``messaging.destination.name`` (the queue),
``messaging.message.id``, ``messaging.operation.type`` and
``messaging.operation.name`` (``send`` or ``process``), and aq's own
``aq.task.name``, ``aq.task.attempt`` and, on ``process`` spans,
``aq.task.outcome``.

``opentelemetry`` is imported when the middleware is made, not when this
module is imported, so ``import aq`` stays light and a missing extra is
reported as a :class:`aq.ConfigurationError` that names it.
"""

from __future__ import annotations

import contextvars
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from aq.errors import ConfigurationError
from aq.message import TaskMessage, error_type
from aq.middleware import Middleware, Outcome

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.propagators.textmap import TextMapPropagator
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider

__all__ = ["TracingMiddleware"]

#: ``messaging.system`` of every span.
SYSTEM: Final = "aq"
#: The default of ``abandon_after``: seconds a send span waits for ``after_publish``.
DEFAULT_ABANDON_AFTER: Final = 300.0
#: The default of ``max_open_sends``.
DEFAULT_MAX_OPEN_SENDS: Final = 10_000
_MAX_DESCRIPTION = 1000


@dataclass(slots=True)
class _Sending:
    """A send span waiting for its message's ``after_publish``."""

    #: Held so that ``id(message)``, the key, names this message while the entry lives.
    message: TaskMessage
    span: Span
    #: The span's start, in ns since the epoch (an abandoned span ends there).
    started: int
    #: ``time.monotonic()`` after which the publish is taken to have failed.
    deadline: float


@dataclass(slots=True)
class _Processing:
    """The process span of the attempt running in this context, and the token
    that detaches its context."""

    message: TaskMessage
    span: Span
    token: contextvars.Token[Context]
    ended: bool = False


class TracingMiddleware(Middleware):
    """Trace messages from ``kiq()`` to the worker with OpenTelemetry.

    Add it to the broker of producers and of workers, first in the list so that
    its spans wrap the other middleware::

        from aq.tracing import TracingMiddleware

        broker = aq.Broker(url, middleware=[TracingMiddleware()])

    Spans (see the module docstring for their attributes):

    * ``send <queue>`` (PRODUCER): from ``before_publish`` to ``after_publish``,
      a child of the span current at ``kiq()``. Its context goes into the
      message headers.
    * ``process <queue>`` (CONSUMER): one per attempt, from ``before_execute`` to
      ``after_execute``, a child of the send span (a retried message keeps the
      headers of its first send, so every attempt is). Retries, failures and
      cancellations set status ERROR and record the exception; ``aq.task.outcome``
      says which (``success``, ``retry``, ``failure``, ``cancelled``). The span
      stays current until the outcome is handed off, so the next steps of a
      workflow, sent then, are its children too.

    A message whose publish fails gets no ``after_publish``: its send span is
    ended by a later send once it has waited ``abandon_after`` seconds, or once
    more than ``max_open_sends`` are waiting, whichever comes first, with status
    ERROR and an end time equal to its start (its real end is unknown).
    ``kiq_many()`` starts the send spans of all its calls before it sends any: raise
    ``max_open_sends`` above the largest batch you send, or the first sends of a
    larger one are ended that way too. A task
    interrupted by a worker shutdown gets no ``after_execute``: its process span
    is never ended nor exported, and since it is kept only in the context of the
    asyncio task that ran the message, it goes when that task does.

    Args:
        tracer_provider: where spans go; by default the global one
            (``opentelemetry.trace.set_tracer_provider``), looked up when a span
            starts, so the middleware may be made before the SDK is configured.
        abandon_after: seconds a send span waits for the publish to complete.
        max_open_sends: the most send spans waiting at once.

    Raises:
        aq.ConfigurationError: ``opentelemetry-api`` is not installed, or an
            argument is out of range.
    """

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        *,
        abandon_after: float = DEFAULT_ABANDON_AFTER,
        max_open_sends: int = DEFAULT_MAX_OPEN_SENDS,
    ) -> None:
        try:
            from opentelemetry import context, propagate, trace
        except ImportError as exc:
            raise ConfigurationError(
                f"TracingMiddleware needs a package that is missing ({exc.name}): "
                "pip install 'aq-tasks[otel]'"
            ) from exc
        from aq import __version__

        if (
            isinstance(abandon_after, bool)
            or not isinstance(abandon_after, int | float)
            or not abandon_after >= 0
        ):
            raise ConfigurationError(
                f"abandon_after must be a number of seconds, 0 or more, not {abandon_after!r}"
            )
        if isinstance(max_open_sends, bool) or not isinstance(max_open_sends, int):
            raise ConfigurationError(f"max_open_sends must be an integer, not {max_open_sends!r}")
        if max_open_sends < 1:
            raise ConfigurationError(f"max_open_sends must be 1 or more, not {max_open_sends}")
        self.abandon_after = float(abandon_after)
        self.max_open_sends = max_open_sends
        self._tracer = trace.get_tracer("aq", __version__, tracer_provider)
        # The API, bound here rather than imported at the top of the module.
        self._attach = context.attach
        self._detach = context.detach
        self._empty_context: Callable[[], Context] = context.Context
        self._propagator: Callable[[], TextMapPropagator] = propagate.get_global_textmap
        self._with_span = trace.set_span_in_context
        self._producer: SpanKind = trace.SpanKind.PRODUCER
        self._consumer: SpanKind = trace.SpanKind.CONSUMER
        self._status: type[Status] = trace.Status
        self._error: StatusCode = trace.StatusCode.ERROR
        #: id(message) -> its send span, oldest first.
        self._sending: OrderedDict[int, _Sending] = OrderedDict()
        #: The process span of the attempt running in the current context.
        self._processing: contextvars.ContextVar[_Processing | None] = contextvars.ContextVar(
            "aq_tracing_processing", default=None
        )

    @property
    def open_sends(self) -> int:
        """Send spans started and not yet ended (for tests and health checks)."""
        return len(self._sending)

    # -- producer ------------------------------------------------------------------

    async def before_publish(self, message: TaskMessage) -> None:
        self._abandon_overdue()
        started = time.time_ns()
        span = self._tracer.start_span(
            f"send {message.queue}",
            kind=self._producer,
            attributes=_attributes(message, "send"),
            start_time=started,
        )
        headers = message.headers
        propagator = self._propagator()
        for name in propagator.fields:  # a copy of another message's: not this one's
            headers.pop(name, None)
        propagator.inject(headers, self._with_span(span))
        key = id(message)
        stale = self._sending.pop(key, None)
        if stale is not None:  # the same message sent again before its first send completed
            self._abandon(stale)
        if span.is_recording():  # a span sampled out has nothing to end
            deadline = time.monotonic() + self.abandon_after
            self._sending[key] = _Sending(message, span, started, deadline)

    async def after_publish(self, message: TaskMessage) -> None:
        sending = self._sending.pop(id(message), None)
        if sending is not None and sending.message is message:
            sending.span.end()

    def _abandon_overdue(self) -> None:
        """End the send spans whose publish has not completed in time, oldest
        first, and the oldest beyond ``max_open_sends`` (making room for one more)."""
        sending = self._sending
        if not sending:
            return
        now = time.monotonic()
        while sending:
            oldest = next(iter(sending.values()))
            if oldest.deadline > now and len(sending) < self.max_open_sends:
                return
            sending.popitem(last=False)
            self._abandon(oldest)

    def _abandon(self, sending: _Sending) -> None:
        span = sending.span
        span.set_attribute("error.type", "_OTHER")
        span.set_status(
            self._status(
                self._error,
                "the publish did not complete: it failed, or was still waiting after "
                f"{self.abandon_after:g} s or behind {self.max_open_sends} other sends",
            )
        )
        span.end(end_time=sending.started)

    # -- worker --------------------------------------------------------------------

    async def before_execute(self, message: TaskMessage) -> None:
        # Only the headers' strings: a header set by hand to anything else is not ours.
        carrier = {k: v for k, v in message.headers.items() if isinstance(v, str)}
        # Extracted into an empty context: what is current in the worker is no parent.
        parent = self._propagator().extract(carrier, self._empty_context())
        span = self._tracer.start_span(
            f"process {message.queue}",
            context=parent,
            kind=self._consumer,
            attributes=_attributes(message, "process"),
        )
        token = self._attach(self._with_span(span, parent))
        # The executor runs before_execute, after_execute and on_result in the one
        # asyncio task it gives each delivery, so they all see this.
        self._processing.set(_Processing(message, span, token))

    async def after_execute(self, message: TaskMessage, outcome: Outcome) -> None:
        processing = self._processing.get()
        if processing is None or processing.message is not message or processing.ended:
            return  # an earlier middleware's before_execute failed: ours never ran
        span = processing.span
        span.set_attribute("aq.task.outcome", outcome.status)
        if outcome.status != "success":
            error = outcome.error
            if error is not None:
                span.record_exception(error)
                span.set_attribute("error.type", error_type(type(error)))
                description = f"{type(error).__name__}: {error}"[:_MAX_DESCRIPTION]
            else:
                description = outcome.status
            span.set_status(self._status(self._error, description))
        span.end()
        processing.ended = True
        if outcome.status == "retry":  # no on_result follows a retry
            self._release(processing)

    async def on_result(self, message: TaskMessage, outcome: Outcome) -> None:
        processing = self._processing.get()
        if processing is not None and processing.message is message:
            self._release(processing)

    def _release(self, processing: _Processing) -> None:
        """Make the span current before ``before_execute`` current again."""
        self._processing.set(None)
        self._detach(processing.token)


def _attributes(message: TaskMessage, operation: str) -> Mapping[str, str | int]:
    attributes: dict[str, str | int] = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": operation,
        "messaging.operation.name": operation,
        "messaging.destination.name": message.queue,
        "messaging.message.id": message.id,
        "aq.task.name": message.task,
        "aq.task.attempt": message.attempt,
    }
    correlation = message.correlation_id
    if correlation is not None and correlation != message.id:
        attributes["messaging.message.conversation_id"] = correlation
    return attributes

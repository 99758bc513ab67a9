"""aq keeping results and task states (``result_ttl``): per task, the producer
writes ``queued`` beside the publish and the worker writes ``running`` and the
result. The drain only; compared with plain aq, which keeps nothing."""

from __future__ import annotations

from benchmarks.systems._aq_variant import plain_worker_argv, stored_app

broker, noop, Client = stored_app(track_states=True)
SETTINGS = "Broker(result_ttl=600): each task's result and states kept in the store"
WORKLOADS = ("drain",)
#: No floor in the issue: the figure is reported, not judged.
TARGET = None
worker_argv = plain_worker_argv
